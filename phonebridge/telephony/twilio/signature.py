"""``X-Twilio-Signature`` checks for webhooks and the media-stream upgrade.

PROTOCOLS.md §1.4. The signature is base64(HMAC-SHA1(auth token, URL + sorted
POST params)), computed by ``twilio.request_validator.RequestValidator``, which
also accepts the URL with and without its default port.

**The URL is the one Twilio requested, as Twilio wrote it** — the configured
public URL (``PHONEBRIDGE_PUBLIC_URL`` + the request path + query string).
Never rebuild it from the request's own scheme/host or from ``X-Forwarded-*``
headers: behind ngrok, a load balancer or TLS termination those differ from
what Twilio signed (every call fails), and trusting forwarded headers lets a
client choose the URL it is validated against. Use :func:`public_request_url`.

For the media-stream upgrade the URL is the ``wss://`` URL exactly as written
in the TwiML ``<Stream url>``, with no params.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def public_request_url(public_base_url: str, path: str, query: str = "") -> str:
    """The URL Twilio signed: configured public base + request path (+ query string).

    ``public_base_url`` may end with a path prefix (``https://x.example/pb``);
    ``path`` is the request path as the app sees it (``/twilio/voice``).
    """
    url = public_base_url.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{query}" if query else url


def validate_webhook(
    auth_token: str,
    public_url_of_request: str,
    params: Mapping[str, str],
    signature: str | None,
) -> bool:
    """True when ``signature`` is Twilio's for this URL and form body."""
    if not signature or not auth_token:
        return False
    # A plain dict: RequestValidator treats a str as a JSON body and duck-types
    # multi-dicts; Twilio's form posts have one value per name.
    return bool(
        RequestValidator(auth_token).validate(public_url_of_request, dict(params), signature)
    )


def validate_stream_upgrade(auth_token: str, wss_url: str, signature: str | None) -> bool:
    """True when ``signature`` signs ``wss_url`` (as written in the TwiML) with no params."""
    return validate_webhook(auth_token, wss_url, {}, signature)


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The signature Twilio would send for ``url`` and ``params`` (for the phone simulator)."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))
