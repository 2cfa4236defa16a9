"""`backup --check` on a B2 bucket's lifecycle rules, judged from the JSON that
`rclone backend lifecycle b2:bucket` prints (the shape documented by rclone and Backblaze:
there is no B2 emulator to ask)."""

from __future__ import annotations

import json

from photos_sync.engine.check import FAIL, OK, CheckReport, b2_versions_check, render_checks

LABEL = "destination b2"

#: rclone's own example output (`rclone backend help b2`, lifecycle)
KEEP_LAST_VERSION = """
[
    {
        "daysFromHidingToDeleting": 1,
        "daysFromUploadingToHiding": null,
        "daysFromStartingToCancelingUnfinishedLargeFiles": null,
        "fileNamePrefix": ""
    }
]
"""


def judge(rules: object, remote_path: str | None = "server1") -> tuple[str, str, bool]:
    check = b2_versions_check(LABEL, "my-immich", remote_path, rules)
    assert check.name == "destination b2 old versions"
    return check.status, check.detail + " — " + check.hint, check.required


def test_keep_only_the_last_version_is_the_policy() -> None:
    status, text, _ = judge(json.loads(KEEP_LAST_VERSION))
    assert status == OK
    assert "deletes hidden versions 1 day after hiding" in text


def test_keep_all_versions_is_a_warning_with_the_fix() -> None:
    for rules in ([], None, "garbage", [{"fileNamePrefix": "", "daysFromHidingToDeleting": None}]):
        status, text, required = judge(rules)
        assert status == FAIL and required is False
        assert "keeps all versions" in text
        assert "Keep only the last version" in text
        assert "rclone backend lifecycle psbase:my-immich -o daysFromHidingToDeleting=1" in text
    warning = b2_versions_check(LABEL, "my-immich", "server1", [])
    lines = render_checks(CheckReport([warning]))
    assert lines[0].startswith("! destination b2 old versions: bucket my-immich keeps all")
    # a warning, not a failure: marked apart from ✗, and counted in the verdict
    assert lines[-1] == "all required checks passed; 1 warning (!) to look at"


def test_a_rule_counts_only_when_it_covers_the_whole_backup() -> None:
    rule = {"daysFromHidingToDeleting": 7, "daysFromUploadingToHiding": None}
    assert judge([{**rule, "fileNamePrefix": "server1/"}])[0] == OK
    assert judge([{**rule, "fileNamePrefix": "serv"}])[0] == OK
    assert judge([{**rule, "fileNamePrefix": "server1/abc"}])[0] == FAIL  # only some names
    assert judge([{**rule, "fileNamePrefix": "other/"}])[0] == FAIL
    assert judge([{**rule, "fileNamePrefix": "server1/"}], remote_path=None)[0] == FAIL
    status, text, _ = judge(
        [
            {**rule, "fileNamePrefix": ""},
            {**rule, "daysFromHidingToDeleting": 1, "fileNamePrefix": "server1"},
        ]
    )
    assert status == OK and "1 day after" in text  # the soonest covering rule


def test_a_rule_that_hides_live_files_is_a_required_failure() -> None:
    rules = [{"fileNamePrefix": "", "daysFromUploadingToHiding": 30, "daysFromHidingToDeleting": 1}]
    status, text, required = judge(rules)
    assert status == FAIL and required is True
    assert "hides every file 30 days after upload" in text
    assert "the backup itself would disappear" in text
