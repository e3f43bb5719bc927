"""The persona schema on its own, and routing by dialled number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from phonebridge.models.base import VOICES, SessionRequest
from phonebridge.personas import Persona, PersonaBook, PersonaError, PersonaFile
from phonebridge.personas.schema import E164_PATTERN


def persona(persona_id: str = "p", **fields: Any) -> Persona:
    base: dict[str, Any] = {
        "name": "P",
        "provider": "personaplex",
        "voice": "NATF2",
        "prompt": "Hello.",
        "id": persona_id,
        "source": Path(f"{persona_id}.yaml"),
    }
    return Persona.model_validate(base | fields)


def errors_of(**fields: Any) -> list[tuple[tuple[int | str, ...], str]]:
    base = {"name": "P", "provider": "personaplex", "voice": "NATF2", "prompt": "Hi"}
    with pytest.raises(ValidationError) as caught:
        PersonaFile.model_validate(base | fields)
    return [(tuple(error["loc"]), error["type"]) for error in caught.value.errors()]


@pytest.mark.parametrize("voice", sorted(VOICES))
def test_every_shipped_voice_is_accepted(voice: str) -> None:
    assert persona(voice=voice).voice == voice


@given(st.text(max_size=12).filter(lambda voice: voice not in VOICES))
def test_anything_else_is_not_a_voice(voice: str) -> None:
    assert errors_of(voice=voice)[0][0] == ("voice",)


@given(st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True))
def test_e164_numbers_are_accepted(number: str) -> None:
    assert persona(numbers=[number]).numbers == (number,)


@given(st.text(max_size=20).filter(lambda text: not E164_PATTERN.fullmatch(text)))
def test_non_e164_text_is_rejected(number: str) -> None:
    assert errors_of(numbers=[number]) == [(("numbers", 0), "e164")]


@pytest.mark.parametrize(
    "number", ["+0123", "14165550123", "+1 416 555 0123", "+1", "+1234567890123456", "+1416555012३"]
)
def test_examples_of_invalid_numbers(number: str) -> None:
    assert errors_of(numbers=[number]) == [(("numbers", 0), "e164")]


def test_fallback_transfer_must_be_e164() -> None:
    assert errors_of(fallback={"transfer_to": "0800 123"}) == [
        (("fallback", "transfer_to"), "e164")
    ]


def test_limits_are_checked() -> None:
    assert errors_of(limits={"max_call_seconds": 0}) == [
        (("limits", "max_call_seconds"), "greater_than")
    ]
    assert errors_of(limits={"max_call_seconds": 5 * 3600}) == [
        (("limits", "max_call_seconds"), "less_than_equal")
    ]
    assert persona(limits={"silence_hangup_seconds": None}).limits.silence_hangup_seconds is None


def test_overflow_must_differ() -> None:
    assert errors_of(overflow="personaplex") == [(("overflow",), "overflow_same")]
    assert persona(overflow="fal").providers() == ("personaplex", "fal")
    assert persona().providers() == ("personaplex",)


def test_tts_fields_reject_markup() -> None:
    assert errors_of(tts_voice='Polly"><Hangup/>') == [(("tts_voice",), "string_pattern_mismatch")]
    assert errors_of(tts_language="en US") == [(("tts_language",), "string_pattern_mismatch")]
    assert persona(tts_voice="Polly.Joanna-Neural", tts_language="en-GB").tts_voice


def test_persona_is_frozen_and_strict() -> None:
    loaded = persona()
    with pytest.raises(ValidationError):
        loaded.name = "other"
    assert errors_of(Name="x") == [(("Name",), "extra_forbidden")]


def test_session_request_carries_prompt_and_voice() -> None:
    assert persona(prompt="  Be kind.  ", voice="VARM4").session_request() == SessionRequest(
        prompt="Be kind.", voice="VARM4"
    )


def test_routing_exact_number_then_default_then_none() -> None:
    sales = persona("sales", numbers=["+14165550101"])
    fallback = persona("chat", default=True)
    book = PersonaBook.from_personas([sales, fallback])
    assert book.for_number("+14165550101") is sales
    assert book.for_number(" +14165550101 ") is sales
    assert book.for_number("+14165550199") is fallback
    assert book.for_number("client:alice") is fallback
    assert book.by_id("sales") is sales
    assert book.by_id("nobody") is None
    assert dict(book.numbers) == {"+14165550101": sales}
    no_default = PersonaBook.from_personas([sales])
    assert no_default.for_number("+14165550199") is None
    assert len(no_default) == 1


def test_book_numbers_are_read_only() -> None:
    book = PersonaBook.from_personas([persona(numbers=["+14165550101"])])
    with pytest.raises(TypeError):
        book.numbers["+1"] = persona()  # type: ignore[index]


def test_book_from_code_rejects_clashes() -> None:
    with pytest.raises(PersonaError) as caught:
        PersonaBook.from_personas(
            [
                persona("a", numbers=["+14165550101"], default=True),
                persona("b", numbers=["+14165550101"], default=True),
                persona("a"),
            ]
        )
    messages = [problem.message for problem in caught.value.problems]
    assert messages == [
        "number +14165550101 is also claimed by 'a'",
        "'a' is already the default persona",
        "persona id 'a' is used twice",
    ]
    with pytest.raises(PersonaError):
        PersonaBook.from_personas([])


def test_a_number_bound_to_a_carrier_routes_only_through_it() -> None:
    telnyx_only = persona("sales", numbers=["+14165550101"], carrier="telnyx")
    anywhere = persona("support", numbers=["+14165550102"])
    fallback = persona("chat", default=True)
    book = PersonaBook.from_personas([telnyx_only, anywhere, fallback])
    assert book.for_number("+14165550101", "telnyx") is telnyx_only
    # The same number through another carrier is refused, not given to the default.
    assert book.for_number("+14165550101", "plivo") is None
    assert book.for_number("+14165550101") is None  # the Twilio path
    assert book.for_number("+14165550102", "vonage") is anywhere
    assert book.for_number("+14165550199", "exotel") is fallback
    assert errors_of(carrier="att") == [(("carrier",), "literal_error")]
    bound_default = PersonaBook.from_personas([persona("chat", default=True, carrier="plivo")])
    assert bound_default.for_number("+1", "plivo") is not None
    assert bound_default.for_number("+1", "twilio") is None
