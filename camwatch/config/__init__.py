"""YAML file -> validated, frozen settings; every problem reported with its field path.

Loading happens in steps, each in its own module and each collecting every problem it finds
before giving up, so that an operator fixes a file in one pass:

    step                          what it does                              module
    1. parse the YAML             file:line:column on a syntax error        load.py
    2. interpolate                ${VAR} / ${VAR:-default} in every string  environment.py
    3. validate with pydantic     one frozen model per section, with        models.py
                                  extra="forbid" (a misspelt key is an
                                  error, not an ignored setting)
                                  durations, URLs, time ranges, days        values.py
                                  pydantic's errors in plain words, with    messages.py
                                  the nearest key for a misspelt one
    4. check across sections      duplicate names, unknown references,      load.py
                                  folders inside one another
                                  notify URLs no Apprise plugin accepts     apprise_urls.py
    -> Config

`load_config(path)` runs the four steps on a file, `parse_config(data)` steps 2-4 on a tree
already parsed. `resolve_api_key` (load.py) then finds the API key: in the file, in a file it
names, or in a systemd credential.

Whatever a file holds, loading ends in a Config or a ConfigError: a file that is too large, not
UTF-8, too deep or uses YAML aliases is refused with its name and line:column (load.py).
A valid configuration may still deserve a warning (audit.py): secrets in a file every user can
read (`readable_secrets`), a link-local or metadata address, an API key sent over plain http
(`address_warnings`), no rules at all (`rule_warnings`). Messages never quote more of a URL than
`scrub_url` shows. What depends on the machine and the user running the check (can the state_dir
be written, the camera folders read) is `check-config`'s preflight (preflight.py).

The names other modules use are re-exported here, so that they import from `camwatch.config`
and not from the step that happens to define a name.
"""

from camwatch.config.audit import (
    ReadableSecrets,
    address_warnings,
    readable_secrets,
    rule_warnings,
)
from camwatch.config.load import (
    DEFAULT_CONFIG_PATH,
    MIN_SECRET_LENGTH,
    load_config,
    parse_config,
    resolve_api_key,
)
from camwatch.config.models import (
    CameraConfig,
    CaptionConfig,
    Config,
    DedupeConfig,
    DeliveryConfig,
    HttpConfig,
    MatchingConfig,
    MqttConfig,
    NotifyConfig,
    RuleConfig,
    WebhookConfig,
)
from camwatch.config.values import DAYS, parse_day, parse_duration, parse_time_range, scrub_url

__all__ = [
    "DAYS",
    "DEFAULT_CONFIG_PATH",
    "MIN_SECRET_LENGTH",
    "CameraConfig",
    "CaptionConfig",
    "Config",
    "DedupeConfig",
    "DeliveryConfig",
    "HttpConfig",
    "MatchingConfig",
    "MqttConfig",
    "NotifyConfig",
    "ReadableSecrets",
    "RuleConfig",
    "WebhookConfig",
    "address_warnings",
    "load_config",
    "parse_config",
    "parse_day",
    "parse_duration",
    "parse_time_range",
    "readable_secrets",
    "resolve_api_key",
    "rule_warnings",
    "scrub_url",
]
