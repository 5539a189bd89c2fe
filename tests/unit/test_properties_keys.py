"""Properties of key handling: which dataset a raw key belongs to, and keys decoded from S3's events (hypothesis)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from labelflow.layout import DATASET_NAME_MAX, DATASET_NAME_PATTERN, dataset_of
from labelflow.models.events import EventBridgeObjectCreated, S3Notification

FAST = settings(max_examples=200, deadline=timedelta(milliseconds=200))
# S3 keys are UTF-8 (no lone surrogates); any other character may occur, '/' included.
KEY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
SEGMENT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="/"), min_size=1, max_size=20)
NAME = re.compile(DATASET_NAME_PATTERN)
DATASETS = st.from_regex(DATASET_NAME_PATTERN, fullmatch=True).filter(lambda name: len(name) <= DATASET_NAME_MAX)


@FAST
@given(dataset=DATASETS, folders=st.lists(SEGMENT, max_size=3), filename=SEGMENT)
def test_a_file_under_raw_dataset_belongs_to_that_dataset(dataset: str, folders: list[str], filename: str) -> None:
    # Given a key raw/<dataset>/[folders/]<file> / Then its dataset is found
    assert dataset_of("/".join(["raw", dataset, *folders, filename])) == dataset


@FAST
@given(key=KEY_TEXT)
def test_any_key_maps_to_no_dataset_or_to_the_folder_it_sits_in(key: str) -> None:
    # When any key is classified
    dataset = dataset_of(key)
    # Then it is ignored, or it is a file (not a folder marker) in raw/<dataset>/ with a valid dataset name
    if dataset is not None:
        assert key.startswith(f"raw/{dataset}/") and not key.endswith("/")
        assert NAME.fullmatch(dataset) and len(dataset) <= DATASET_NAME_MAX


@FAST
@given(dataset=DATASETS, folders=st.lists(SEGMENT, max_size=2))
def test_folder_markers_belong_to_no_dataset(dataset: str, folders: list[str]) -> None:
    # Given a folder marker (a key ending in '/') under a dataset / Then it is ignored
    assert dataset_of("/".join(["raw", dataset, *folders]) + "/") is None


@FAST
@given(folder=st.one_of(DATASETS, SEGMENT, st.from_regex(r"[a-z]{60,70}", fullmatch=True)), filename=SEGMENT)
def test_a_file_belongs_to_its_folder_exactly_when_the_folder_is_a_dataset_name(folder: str, filename: str) -> None:
    # Given a file in any folder under raw/ (names by the rule, against it: '_', '--', uppercase, too long...)
    named = len(folder) <= DATASET_NAME_MAX and NAME.fullmatch(folder) is not None
    # Then it belongs to that folder's dataset exactly when the folder is named by the rule
    assert dataset_of(f"raw/{folder}/{filename}") == (folder if named else None)


def _eventbridge(encoded_key: str) -> dict[str, object]:
    return {
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": "b"}, "object": {"key": encoded_key, "size": 1}},
    }


def _notification(encoded_key: str) -> dict[str, object]:
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": encoded_key}}}
    return {"Records": [record]}


@FAST
@given(key=KEY_TEXT.filter(bool))
def test_a_form_encoded_key_decodes_back_to_the_key(key: str) -> None:
    # Given a key form-encoded as S3 puts it in its events ('+' for spaces, %XX for the rest)
    encoded = quote_plus(key, safe="/")
    # When either event shape is parsed / Then the object's key is the key itself
    assert EventBridgeObjectCreated.model_validate(_eventbridge(encoded)).objects()[0].key == key
    assert S3Notification.model_validate(_notification(encoded)).objects()[0].key == key
