"""Webhook and media-socket authentication per carrier (CARRIERS.md §1.2, §2.7, §3.5, §4.5, §5.2).

Each check is exercised valid, forged, missing and stale/replayed. Reference
signatures are computed independently: Ed25519 keys generated with
``cryptography`` in the test, Plivo V3 with Plivo's own SDK helper, Vonage
JWTs with PyJWT, SignalWire with the documented HMAC written out here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from plivo.utils.signature_v3 import validate_v3_signature

from phonebridge.errors import ConfigError
from phonebridge.telephony.exotel import auth as exotel
from phonebridge.telephony.plivo import signature as plivo
from phonebridge.telephony.seen import SeenValues
from phonebridge.telephony.signalwire import signature as signalwire
from phonebridge.telephony.telnyx import signature as telnyx
from phonebridge.telephony.vonage import signature as vonage

NOW = 1_750_000_000.0

# --------------------------------------------------------------------------- Telnyx


@pytest.fixture(scope="module")
def ed_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_telnyx_valid_forged_missing_stale(ed_key: Ed25519PrivateKey) -> None:
    public = telnyx.load_public_key(telnyx.public_key_text(ed_key))
    body = b'{"data":{"event_type":"call.initiated"}}'
    ts = str(int(NOW))
    # Reference: sign "timestamp|body" with the private key directly.
    good = base64.b64encode(ed_key.sign(ts.encode() + b"|" + body)).decode()
    assert telnyx.sign(ed_key, body, ts) == good
    assert telnyx.verify_webhook(public, body, signature=good, timestamp=ts, now=NOW)
    assert telnyx.verify_webhook(public, body, signature=good, timestamp=ts, now=NOW + 299)
    other = Ed25519PrivateKey.generate()
    forged = telnyx.sign(other, body, ts)
    for signature, timestamp, data, now in [
        (forged, ts, body, NOW),  # another key
        (good, ts, body + b" ", NOW),  # body changed
        (good, str(int(NOW) + 1), body, NOW),  # timestamp changed
        (good, ts, body, NOW + 301),  # stale: a replay five minutes on
        (good, ts, body, NOW - 301),  # from the future
        (None, ts, body, NOW),
        (good, None, body, NOW),
        ("", ts, body, NOW),
        ("not base64!", ts, body, NOW),
        (good, "12a", body, NOW),
    ]:
        assert not telnyx.verify_webhook(
            public, data, signature=signature, timestamp=timestamp, now=now
        )


def test_telnyx_public_key_must_be_32_raw_bytes() -> None:
    with pytest.raises(ConfigError):
        telnyx.load_public_key("c2hvcnQ=")
    with pytest.raises(ConfigError):
        telnyx.load_public_key("not base64 at all")


def test_telnyx_stream_token() -> None:
    assert telnyx.verify_stream_token("secret-token", "secret-token")
    assert not telnyx.verify_stream_token("secret-token", "secret-tokeN")
    assert not telnyx.verify_stream_token("secret-token", None)
    assert not telnyx.verify_stream_token("", "")


# --------------------------------------------------------------------------- Plivo

PLIVO_TOKEN = "MjA0NDU2ZjVkZWY1NjU4OTk5ZmNhY2E2YWQ3N2Mz"


@pytest.mark.parametrize(
    ("method", "url", "params"),
    [
        ("POST", "https://bridge.example.com/plivo/voice", {"CallUUID": "c1", "To": "1415"}),
        ("POST", "https://bridge.example.com/plivo/voice?b=2&a=1", {"CallUUID": "c1"}),
        ("POST", "https://bridge.example.com/plivo/voice?a=1", {}),
        ("POST", "https://bridge.example.com/plivo/voice", {}),
        ("GET", "https://bridge.example.com/plivo/voice?z=9", {"CallUUID": "c1", "From": "x"}),
        ("GET", "https://bridge.example.com/plivo/voice", {}),
        ("POST", "https://bridge.example.com/plivo/voice", {"Multi": ["b", "a"]}),
    ],
)
def test_plivo_v3_agrees_with_plivos_own_helper(
    method: str, url: str, params: dict[str, str]
) -> None:
    nonce = "05429567804466091622"
    mine = plivo.sign(PLIVO_TOKEN, method, url, params, nonce)
    assert validate_v3_signature(method, url, nonce, PLIVO_TOKEN, mine, dict(params))
    assert plivo.validate(
        PLIVO_TOKEN, method, url, params, nonce=nonce, signature_header=f"xx,{mine}"
    )


def test_plivo_v3_forged_missing_and_changed() -> None:
    url = "https://bridge.example.com/plivo/voice"
    params = {"CallUUID": "c1", "To": "14155550100"}
    good = plivo.sign(PLIVO_TOKEN, "POST", url, params, "n1")
    assert plivo.validate(PLIVO_TOKEN, "POST", url, params, nonce="n1", signature_header=good)
    for token, nonce, header, p, u in [
        ("other", "n1", good, params, url),
        (PLIVO_TOKEN, "n2", good, params, url),  # nonce is signed
        (PLIVO_TOKEN, None, good, params, url),
        (PLIVO_TOKEN, "n1", None, params, url),
        (PLIVO_TOKEN, "n1", "", params, url),
        (PLIVO_TOKEN, "n1", good, {**params, "To": "1"}, url),
        (PLIVO_TOKEN, "n1", good, params, url + "?x=1"),
        ("", "n1", good, params, url),
    ]:
        assert not plivo.validate(token, "POST", u, p, nonce=nonce, signature_header=header)


@given(
    params=st.dictionaries(
        st.text(st.characters(codec="ascii", exclude_characters="\x00"), min_size=1, max_size=8),
        st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=8),
        max_size=5,
    ),
    nonce=st.text(st.characters(codec="ascii", exclude_characters="\x00"), min_size=1),
)
def test_plivo_v3_random_posts_agree_with_the_sdk(params: dict[str, str], nonce: str) -> None:
    url = "https://bridge.example.com/plivo/voice"
    mine = plivo.sign(PLIVO_TOKEN, "POST", url, params, nonce)
    assert validate_v3_signature("POST", url, nonce, PLIVO_TOKEN, mine, dict(params))


def test_seen_values_refuse_a_replayed_nonce_and_forget_old_ones() -> None:
    seen = SeenValues(ttl=60.0, capacity=3)
    assert seen.first_use("n1", 0.0)
    assert not seen.first_use("n1", 30.0)  # replay
    assert seen.first_use("n1", 61.0)  # expired: remembered only for ttl
    for i in range(5):
        seen.first_use(f"x{i}", 62.0)
    assert len(seen) <= 3


# --------------------------------------------------------------------------- Vonage

SECRET = "vonage-signature-secret-0123456789abcdef"


def vonage_token(**claims: object) -> str:
    base: dict[str, object] = {"iat": int(NOW), "jti": "j1", "api_key": "key1"}
    base.update(claims)
    return jwt.encode(base, SECRET, algorithm="HS256")


def test_vonage_valid_token_and_payload_hash() -> None:
    body = b'{"status":"answered"}'
    token = vonage_token(payload_hash=hashlib.sha256(body).hexdigest())
    claims = vonage.verify(f"Bearer {token}", SECRET, NOW, body=body, api_key="key1")
    assert claims is not None
    assert claims["jti"] == "j1"
    assert vonage.verify(f"Bearer {token}", SECRET, NOW, body=body + b"x") is None
    signed = vonage.sign(SECRET, NOW, api_key="key1", jti="j9", body=body)
    assert vonage.verify(f"Bearer {signed}", SECRET, NOW, body=body) is not None
    # A short secret (Vonage's choice) still verifies, without PyJWT's warning.
    short = vonage.sign("short", NOW, api_key="k", jti="j")
    assert vonage.verify(f"Bearer {short}", "short", NOW) is not None


def test_vonage_forged_missing_stale_replayed_and_alg_confusion() -> None:
    good = vonage_token()
    none_alg = jwt.encode({"iat": int(NOW), "jti": "j"}, None, algorithm="none")
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        hs512 = jwt.encode({"iat": int(NOW), "jti": "j"}, SECRET, algorithm="HS512")
    assert vonage.verify(f"Bearer {good}", SECRET, NOW) is not None
    for header, now in [
        (f"Bearer {good}", NOW + 301),  # stale
        (f"Bearer {vonage_token(iat='soon')}", NOW),
        (f"Bearer {jwt.encode({'iat': int(NOW)}, 'w' * 32, algorithm='HS256')}", NOW),
        (f"Bearer {none_alg}", NOW),
        (f"Bearer {hs512}", NOW),
        (f"Basic {good}", NOW),
        ("Bearer ", NOW),
        (None, NOW),
        ("Bearer not.a.jwt", NOW),
    ]:
        assert vonage.verify(header, SECRET, now) is None, header
    assert vonage.verify(f"Bearer {good}", SECRET, NOW, api_key="someone-else") is None
    seen = SeenValues()
    assert vonage.verify(f"Bearer {good}", SECRET, NOW, seen=seen) is not None
    assert vonage.verify(f"Bearer {good}", SECRET, NOW + 1, seen=seen) is None  # replay


# --------------------------------------------------------------------------- SignalWire

SW_KEY = "PSK_signing_key_0123456789"
SW_URL = "https://bridge.example.com/signalwire/voice"
SW_PARAMS = {"CallSid": "CA1", "From": "+14165550100", "To": "+14165550123"}


def sw_reference(key: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(key.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_signalwire_form_signature() -> None:
    good = sw_reference(SW_KEY, SW_URL, SW_PARAMS)
    assert signalwire.sign_form(SW_KEY, SW_URL, SW_PARAMS) == good
    assert signalwire.validate_form(SW_KEY, SW_URL, SW_PARAMS, good)
    assert not signalwire.validate_form("project-api-token", SW_URL, SW_PARAMS, good)
    assert not signalwire.validate_form(SW_KEY, SW_URL, {**SW_PARAMS, "To": "+1"}, good)
    assert not signalwire.validate_form(SW_KEY, SW_URL, SW_PARAMS, None)
    assert not signalwire.validate_form(SW_KEY, SW_URL, SW_PARAMS, "A" * 28)


def test_signalwire_json_signatures_prefer_sha256() -> None:
    body = b'{"call":{"call_id":"x"}}'
    sha1 = hmac.new(SW_KEY.encode(), SW_URL.encode() + body, hashlib.sha1).hexdigest()
    sha256 = hmac.new(SW_KEY.encode(), SW_URL.encode() + body, hashlib.sha256).hexdigest()
    assert signalwire.validate_json(SW_KEY, SW_URL, body, sha1, None)
    assert signalwire.validate_json(SW_KEY, SW_URL, body, "bogus", sha256)
    assert not signalwire.validate_json(SW_KEY, SW_URL, body, sha1, "bogus")
    assert not signalwire.validate_json(SW_KEY, SW_URL, body + b" ", sha1, None)
    assert not signalwire.validate_json(SW_KEY, SW_URL, body, None, None)


def test_signalwire_bearer() -> None:
    assert signalwire.verify_bearer("tok", "Bearer tok")
    assert signalwire.verify_bearer("tok", "bearer tok")
    assert not signalwire.verify_bearer("tok", "Bearer tok2")
    assert not signalwire.verify_bearer("tok", "Basic tok")
    assert not signalwire.verify_bearer("tok", None)
    assert not signalwire.verify_bearer("", "Bearer ")


# --------------------------------------------------------------------------- Exotel


def test_exotel_basic_auth_and_allow_list() -> None:
    header = "Basic " + base64.b64encode(b"key1:tok:en").decode()
    assert exotel.basic_header("key1", "tok:en") == header
    nets = exotel.parse_networks("203.0.113.0/24, 198.51.100.7;2001:db8::/32")
    assert exotel.authorized(
        user="key1", password="tok:en", networks=(), authorization=header, address=None
    )
    assert exotel.authorized(
        user="", password="", networks=nets, authorization=None, address="203.0.113.9"
    )
    assert exotel.authorized(
        user="", password="", networks=nets, authorization=None, address="2001:db8::1"
    )
    for kwargs in [
        {"user": "key1", "password": "other", "networks": (), "authorization": header},
        {"user": "key1", "password": "tok:en", "networks": (), "authorization": None},
        {"user": "key1", "password": "tok:en", "networks": (), "authorization": "Basic !!"},
        {"user": "key1", "password": "tok:en", "networks": (), "authorization": "Bearer x"},
        {"user": "", "password": "", "networks": nets, "authorization": None},
        {"user": "key1", "password": "tok:en", "networks": nets, "authorization": header},
        {"user": "", "password": "", "networks": (), "authorization": header},
    ]:
        assert not exotel.authorized(**kwargs, address="192.0.2.1")  # type: ignore[arg-type]
    assert not exotel.address_allowed(nets, "not-an-ip")
    with pytest.raises(ConfigError):
        exotel.parse_networks("203.0.113.0/24, nonsense")


def test_real_clock_is_not_read() -> None:
    # The checks take `now`; a token signed "now" by the wall clock is stale at NOW.
    token = vonage.sign(SECRET, time.time(), api_key="k", jti="j")
    assert vonage.verify(f"Bearer {token}", SECRET, NOW) is None
