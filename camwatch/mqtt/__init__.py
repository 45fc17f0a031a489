"""MQTT and Home Assistant: what camwatch publishes on a broker.

    address.py   the `mqtt.url`: mqtt:// or mqtts://, user and password (parsed, never shown)
    topics.py    topic names and the ids made of camera and rule names ([a-zA-Z0-9_-] only)
    link.py      the one connection and its thread: last will, reconnects with backoff, the
                 retained caption, snapshot and sensor states, the hold timers, alert publishing
    camwatch/homeassistant.py   the discovery messages (pure functions)
    camwatch/senders/mqtt.py    the `P/alert` target of the outbox, through the link

This package's own modules import paho-mqtt only in link.py, so that the configuration can
parse a broker URL without loading the client.
"""
