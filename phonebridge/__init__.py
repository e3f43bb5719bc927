"""phonebridge: a full-duplex PersonaPlex speech model on a phone number.

Twilio Media Streams (8 kHz mu-law) on one side, PersonaPlex (24 kHz Opus in
Ogg, or raw PCM for fal) on the other, one model session per call.
"""

__version__ = "0.1.0"
