"""docs/config-reference.md is what the option schema generates."""

from pathlib import Path

from esrforge.options.reference import reference

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_is_up_to_date():
    committed = (REPO / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == reference(), (
        "docs/config-reference.md is out of date: run "
        "`PYTHONPATH=codes python -m esrforge.options.reference docs/config-reference.md`"
    )


def test_reference_covers_every_registered_type_and_key():
    text = reference()
    for heading in ("network type: RRDBNet", "loss type: translational", "dataset type: HRPatchDataset"):
        assert heading in text
    for key in ("`lr_G`", "`save_checkpoint_freq`", "`resume_state`", "`bicubic_skip`", "`noise`"):
        assert key in text
