"""A B2 key's capabilities, read from `b2_authorize_account` answers in the documented shapes
(tests/support/b2_answers.py names the sources), and what `--setup --append-only` and
`--check` conclude from them."""

from __future__ import annotations

import calendar

import pytest

from photos_sync.core.b2_keys import (
    KeyCapabilities,
    append_only_refusal,
    parse_authorization,
    protection_verdict,
)
from photos_sync.engine.check import (
    FAIL,
    OK,
    CheckReport,
    b2_versions_check,
    hiding_to_deleting_days,
    render_checks,
)
from tests.support.b2_answers import (
    APPEND_ONLY_CAPABILITIES,
    AUTHORIZE_V2,
    AUTHORIZE_V3_MASTER,
    AUTHORIZE_V4,
    v4_answer,
)

NEW_YEAR_2026 = calendar.timegm((2026, 1, 1, 0, 0, 0))


def test_v4_answer_a_bucket_restricted_key_without_delete() -> None:
    key = parse_authorization(AUTHORIZE_V4)
    assert key.shape == "v4" and key.problem is None
    assert key.capabilities == frozenset(APPEND_ONLY_CAPABILITIES)
    assert key.can_delete is False
    assert key.buckets == ("immich-backup-yourname",)
    assert key.scope() == "bucket immich-backup-yourname"
    assert key.name_prefix is None
    assert key.expires_ms == NEW_YEAR_2026 * 1000
    assert key.undoing == () and key.refused_for_append_only == ()
    assert append_only_refusal(key) is None


def test_v3_answer_the_master_key_can_do_everything() -> None:
    key = parse_authorization(AUTHORIZE_V3_MASTER)
    assert key.shape == "v3"
    assert key.can_delete is True
    assert key.buckets == () and key.scope() == "every bucket"
    assert key.expires_ms is None and key.expiry() is None
    assert key.refused_for_append_only == ("deleteFiles", "writeKeys")
    assert key.undoing == (
        "writeBuckets",
        "writeBucketRetentions",
        "writeFileRetentions",
        "bypassGovernance",
    )
    refusal = append_only_refusal(key)
    assert refusal is not None and "\n" not in refusal
    assert refusal.startswith("this B2 key has deleteFiles and writeKeys: a compromised host")
    assert "listBuckets,listFiles,readFiles,writeFiles" in refusal


def test_v2_answer_top_level_allowed() -> None:
    key = parse_authorization(AUTHORIZE_V2)
    assert key.shape == "v2"
    assert key.can_delete is True
    assert key.buckets == ("BUCKET_NAME",)
    assert key.refused_for_append_only == ("deleteFiles",)


def test_restrictions_prefix_several_buckets_and_a_deleted_bucket() -> None:
    key = parse_authorization(
        v4_answer(
            APPEND_ONLY_CAPABILITIES,
            buckets=[{"id": "id-1", "name": "photos-a"}, {"id": "id-gone", "name": None}],
            namePrefix="server1/",
        )
    )
    # a bucket that no longer exists keeps only its id
    assert key.buckets == ("photos-a", "id-gone")
    assert key.scope() == "buckets photos-a, id-gone, names starting 'server1/'"
    unrestricted = parse_authorization(v4_answer(APPEND_ONLY_CAPABILITIES, buckets=None))
    assert unrestricted.buckets == () and unrestricted.scope() == "every bucket"
    v3 = dict(AUTHORIZE_V3_MASTER)
    v3["apiInfo"] = {
        "storageApi": {
            **AUTHORIZE_V3_MASTER["apiInfo"]["storageApi"],
            "bucketId": "b-id",
            "bucketName": None,
        }
    }
    assert parse_authorization(v3).buckets == ("b-id",)


def test_expiry_is_said_in_days() -> None:
    key = parse_authorization(AUTHORIZE_V4)
    assert key.expiry(now=NEW_YEAR_2026 - 12 * 86400 - 5) == "expires 2026-01-01 (in 12 days)"
    assert key.expiry(now=NEW_YEAR_2026 - 3600) == "expires 2026-01-01 (in 0 days)"
    assert key.expiry(now=NEW_YEAR_2026 + 1) == "expired 2026-01-01"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (None, "the authorisation answer is not a JSON object"),
        ([1, 2], "the authorisation answer is not a JSON object"),
        ({"accountId": "x"}, "the authorisation answer has no storageApi or allowed section"),
        ({"apiInfo": {"storageApi": {}}}, "the authorisation answer lists no capabilities"),
        (
            {"apiInfo": {"storageApi": {"allowed": {"capabilities": "deleteFiles"}}}},
            "the authorisation answer lists no capabilities",
        ),
        ({"allowed": {"bucketId": None}}, "the authorisation answer lists no capabilities"),
        ({"apiInfo": "v9"}, "the authorisation answer has no storageApi or allowed section"),
    ],
)
def test_malformed_answers_give_a_clear_verdict_never_a_crash(answer: object, problem: str) -> None:
    key = parse_authorization(answer)
    assert key.capabilities is None and key.can_delete is None
    assert key.problem == problem
    assert key.describe() == "unknown"
    refusal = append_only_refusal(key)
    assert refusal == (
        f"cannot tell whether this B2 key can delete files ({problem}): nothing was saved"
    )
    verdict = protection_verdict(key, append_only=True, hiding_days=30, rules_read=True)
    assert verdict.protected is None and verdict.detail == f"not known: {problem}"


def test_unknown_fields_and_odd_values_are_ignored() -> None:
    answer = v4_answer([*APPEND_ONLY_CAPABILITIES, 42, "someFutureCapability"], extra={"x": 1})
    answer["applicationKeyExpirationTimestamp"] = True  # not a number
    key = parse_authorization(answer)
    assert key.capabilities == frozenset([*APPEND_ONLY_CAPABILITIES, "someFutureCapability"])
    assert key.expires_ms is None
    assert append_only_refusal(key) is None


def test_a_writekeys_key_is_refused_even_without_delete() -> None:
    key = parse_authorization(v4_answer([*APPEND_ONLY_CAPABILITIES, "writeKeys"]))
    assert key.can_delete is False
    refusal = append_only_refusal(key)
    assert refusal is not None and refusal.startswith("this B2 key has writeKeys:")


# -- the `--check` protection verdict ------------------------------------------------------------


def _key(*extra: str, expires_ms: int | None = None) -> KeyCapabilities:
    answer = v4_answer([*APPEND_ONLY_CAPABILITIES, *extra])
    answer["applicationKeyExpirationTimestamp"] = expires_ms
    return parse_authorization(answer)


def test_append_only_key_is_protected_and_says_for_how_long() -> None:
    verdict = protection_verdict(_key(), append_only=True, hiding_days=30, rules_read=True)
    assert verdict.protected is True
    assert verdict.detail == (
        "append-only: this key cannot delete files (capabilities: "
        "listBuckets,listFiles,readFiles,writeFiles; bucket immich-backup-yourname); "
        "a hidden file stays recoverable 30 days (lifecycle)"
    )
    no_rule = protection_verdict(_key(), append_only=True, hiding_days=None, rules_read=True)
    assert no_rule.detail.endswith(
        "a hidden file stays recoverable until deleted by hand (no lifecycle rule)"
    )
    unread = protection_verdict(_key(), append_only=True, hiding_days=None, rules_read=False)
    assert "(lifecycle rules not read)" in unread.detail


def test_key_expiry_is_shown() -> None:
    key = _key(expires_ms=NEW_YEAR_2026 * 1000)
    soon = protection_verdict(
        key, append_only=True, hiding_days=7, rules_read=True, now=NEW_YEAR_2026 - 40 * 86400
    )
    assert soon.protected is True
    assert soon.detail.endswith("; key expires 2026-01-01 (in 40 days)")
    gone = protection_verdict(
        key, append_only=True, hiding_days=7, rules_read=True, now=NEW_YEAR_2026 + 10
    )
    assert gone.protected is False and gone.required is True
    assert gone.detail.endswith("; key expired 2026-01-01")


def test_a_deleting_key_is_not_protected() -> None:
    verdict = protection_verdict(
        _key("deleteFiles"), append_only=False, hiding_days=1, rules_read=True
    )
    assert verdict.protected is False and verdict.required is False  # a warning
    assert verdict.detail == (
        "not protected: this key has deleteFiles — a compromised host can delete the backup"
    )
    assert verdict.hint.startswith(
        "create a key without deleteFiles and run `photos-sync backup --setup b2 --append-only`"
    )
    # an append-only destination whose key was swapped for one that deletes: a failure
    swapped = protection_verdict(
        _key("deleteFiles"), append_only=True, hiding_days=30, rules_read=True
    )
    assert swapped.protected is False and swapped.required is True


def test_a_key_that_can_change_the_lifecycle_is_a_warning() -> None:
    verdict = protection_verdict(
        _key("writeBuckets"), append_only=True, hiding_days=30, rules_read=True
    )
    assert verdict.protected is False and verdict.required is False
    assert verdict.detail.startswith("append-only: this key cannot delete files")
    assert "but it has writeBuckets: a compromised host could change the bucket's lifecycle" in (
        verdict.detail
    )


def test_a_key_without_delete_on_a_normal_destination_cannot_archive() -> None:
    verdict = protection_verdict(_key(), append_only=False, hiding_days=1, rules_read=True)
    assert verdict.protected is False and verdict.required is True
    assert "archiving a replaced or deleted file needs a delete and fails" in verdict.detail
    assert verdict.hint == "run `photos-sync backup --setup b2 --append-only` for this destination"


# -- the lifecycle rules of an append-only destination's bucket ---------------------------------


def _versions(rules: object) -> tuple[str, str, bool]:
    check = b2_versions_check("destination b2", "my-immich", "server1", rules, append_only=True)
    assert check.name == "destination b2 old versions"
    return check.status, f"{check.detail} — {check.hint}", check.required


def test_append_only_lifecycle_hidden_versions_are_the_protection() -> None:
    status, text, _ = _versions([{"fileNamePrefix": "", "daysFromHidingToDeleting": 30}])
    assert status == OK
    assert "deletes hidden versions 30 days after hiding: a file an attacker hides stays " in text
    # the normal policy calls 1 day ideal; here it is a warning
    status, text, required = _versions([{"fileNamePrefix": "", "daysFromHidingToDeleting": 1}])
    assert status == FAIL and required is False
    assert text.startswith(
        "bucket my-immich: a file an attacker hides is recoverable only 1 day (lifecycle "
        "daysFromHidingToDeleting)"
    )
    assert "daysFromHidingToDeleting 7 or more" in text
    assert _versions([{"fileNamePrefix": "", "daysFromHidingToDeleting": 6}])[0] == FAIL
    assert _versions([{"fileNamePrefix": "", "daysFromHidingToDeleting": 7}])[0] == OK


def test_append_only_lifecycle_without_a_rule_is_protected_but_billed() -> None:
    status, text, required = _versions([])
    assert status == FAIL and required is False
    assert "keeps all versions: every file hidden (by an attacker" in text
    assert "stays recoverable, and billed, until deleted by hand" in text
    lines = render_checks(CheckReport([b2_versions_check("d", "b", "s", [], append_only=True)]))
    assert lines[0].startswith("! d old versions: bucket b keeps all versions")
    assert lines[-1] == "all required checks passed; 1 warning (!) to look at"


def test_append_only_lifecycle_hiding_after_upload_still_fails() -> None:
    status, text, required = _versions(
        [{"fileNamePrefix": "", "daysFromUploadingToHiding": 30, "daysFromHidingToDeleting": 30}]
    )
    assert status == FAIL and required is True
    assert "the backup itself would disappear" in text


def test_hiding_to_deleting_days_takes_the_shortest_covering_rule() -> None:
    rules = [
        {"fileNamePrefix": "", "daysFromHidingToDeleting": 30},
        {"fileNamePrefix": "server1/", "daysFromHidingToDeleting": 10},
        {"fileNamePrefix": "other/", "daysFromHidingToDeleting": 1},
    ]
    assert hiding_to_deleting_days(rules, "server1") == 10
    assert hiding_to_deleting_days([], "server1") is None
    assert hiding_to_deleting_days("garbage", "server1") is None
