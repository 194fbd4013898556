import pickle
import re
import string
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.dws.validation import (
    InvalidInput,
    find_snapshot_id,
    validate_backup_name,
    validate_description,
    validate_snapshot_id,
)

CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VALID_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{3,63}")


# -- snapshot ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_id", "expected"),
    [
        ("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90"),
        ("4CA46BF1-5C61-48FF-B4F3-0AD4E5E3BA90", "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90"),
        ("  4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90\n", "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90"),
    ],
)
def test_snapshot_id_is_stripped_and_lower_cased(given_id: str, expected: str) -> None:
    assert validate_snapshot_id(given_id) == expected


@pytest.mark.parametrize(
    "bad_id",
    [
        "4ca46bf15c6148ffb4f30ad4e5e3ba90",  # no hyphens
        "{4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90}",
        "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba9",  # one digit short
        "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90/linked-copy",
        "../../v1.0/other-project/snapshots",
        "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba9g",
        "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba9\u0661",  # an Arabic-Indic digit one
        "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90?x=1",
    ],
)
def test_snapshot_id_that_is_not_a_uuid_is_refused(bad_id: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_snapshot_id(bad_id)
    assert caught.value.field == "snapshot_id"
    assert str(caught.value) == (
        "Snapshot ID must be a UUID such as 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90."
    )


def test_empty_snapshot_id_says_it_is_required() -> None:
    with pytest.raises(InvalidInput, match="^Snapshot ID is required.$"):
        validate_snapshot_id("   ")


@given(st.uuids())
def test_every_uuid_is_accepted_in_either_case(value: uuid.UUID) -> None:
    assert validate_snapshot_id(str(value).upper()) == str(value)


@given(st.text())
def test_only_a_canonical_uuid_ever_comes_out(text: str) -> None:
    # Guards the URL path: whatever goes in, what comes out can hold no '/', '?' or '..'.
    try:
        result = validate_snapshot_id(text)
    except InvalidInput as exc:
        assert exc.field == "snapshot_id"
    else:
        assert CANONICAL_UUID.fullmatch(result)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "please copy 4CA46BF1-5c61-48ff-b4f3-0ad4e5e3ba90 tonight",
            "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        ),
        (
            "<https://console/dws/4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90|last night>",
            "4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
        ),
        (
            "first 11111111-2222-3333-4444-555555555555 then 4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90",
            "11111111-2222-3333-4444-555555555555",
        ),
        ("no id here", None),
        # Part of a longer hex run is not an id of its own.
        ("a4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90", None),
        ("4ca46bf1-5c61-48ff-b4f3-0ad4e5e3ba90ff", None),
    ],
)
def test_find_snapshot_id_in_free_text(text: str, expected: str | None) -> None:
    assert find_snapshot_id(text) == expected


# -- backup names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["test", "Nightly_copy-2024", "a" * 64, "  keep-me  "])
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_backup_name(name) == name.strip()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "The new name is required."),
        ("1copy", "The new name must start with a letter."),
        ("-copy", "The new name must start with a letter."),
        ("écopy", "The new name must start with a letter."),
        (
            "copy one.two",
            "The new name may contain only letters, digits, '-' and '_', not ' ', '.'.",
        ),
        ("copié", "The new name may contain only letters, digits, '-' and '_', not 'é'."),
        ("abc", "The new name must be 4 to 64 characters long; it is 3."),
        ("a" * 65, "The new name must be 4 to 64 characters long; it is 65."),
    ],
)
def test_name_errors_say_which_rule_failed(name: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_backup_name(name)
    assert caught.value.field == "backup_name"
    assert caught.value.message == message
    assert str(caught.value) == message


@given(st.from_regex(VALID_NAME, fullmatch=True))
def test_generated_valid_names_pass_unchanged(name: str) -> None:
    assert validate_backup_name(name) == name


@given(st.text(alphabet=string.printable + "éß٣", max_size=80))
def test_any_accepted_name_keeps_every_rule(text: str) -> None:
    try:
        name = validate_backup_name(text)
    except InvalidInput as exc:
        assert exc.field == "backup_name"
    else:
        assert VALID_NAME.fullmatch(name)


# -- descriptions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        (None, ""),
        ("", ""),
        ("  before the restore  ", "before the restore"),
        ("x" * 256, "x" * 256),
    ],
)
def test_valid_descriptions(given_text: str | None, expected: str) -> None:
    assert validate_description(given_text) == expected


def test_long_description_reports_its_length() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_description("x" * 300)
    assert caught.value.field == "description"
    assert str(caught.value) == "The description must be at most 256 characters; it is 300."


def test_forbidden_characters_are_named_in_order_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_description("a <b> & c & 'quoted'")
    assert caught.value.field == "description"
    assert str(caught.value).startswith("The description cannot contain '<', '>', '&', \"'\";")


@given(st.one_of(st.none(), st.text(max_size=300)))
def test_any_accepted_description_keeps_every_rule(text: str | None) -> None:
    try:
        description = validate_description(text)
    except InvalidInput as exc:
        assert exc.field == "description"
    else:
        assert len(description) <= 256
        assert not set(description) & set("!<>'=&\"")


def test_invalid_input_survives_pickling() -> None:
    # Errors cross process boundaries in some job runners; the field must survive.
    error = pickle.loads(pickle.dumps(InvalidInput("backup_name", "Too short.")))
    assert (error.field, error.message, str(error)) == ("backup_name", "Too short.", "Too short.")
