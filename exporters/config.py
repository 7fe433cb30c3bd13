"""What to export: a TOML file and/or the quick-form flags, checked once into plain dataclasses.

    interval = 5                          # seconds between stats (metrics) and console summaries
    metrics_address = "127.0.0.1:9464"
    spans_file = "peeka-spans.jsonl"      # used when no OTLP endpoint is configured
    keep_agent = false                    # on exit leave the agent loaded (probes always go)
    overhead_budget = 5                   # percent of each target's CPU its probes may cost (0: no governor)
    forget_after = 300                    # s a gone target's series stay (peeka_target_up 0) before they go
    by_service = false                    # series per service, without the pid label (summed over its processes)
    pyroscope_url = "http://pyroscope:4040"   # continuous profiles also go to Pyroscope's ingest API (pprof)

    [[targets]]
    match = "gunicorn: worker .*shop"     # or pid = 1234, pids = [..], all = true
    service = "shop"                      # default: from the target's command line
    watch = ["shop.views.*", {pattern = "shop.pay", condition = "cost > 5", sample = 0.1}]
    trace = [{pattern = "shop.checkout", max_per_second = 20}]   # sample, max_per_second: else the governor decides
    monitor = ["shop.db.*"]
    capture_args = true
    capture_result = true
    max_value = 256                       # characters per captured value
    redact = ["ssn"]                      # added to password, token, secret, authorization, cookie, key
    profile = true                        # a continuous CPU profile (OTLP profiles and/or Pyroscope), linked to the spans
    rate_hz = 19                          # its sampling rate
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from peeka.errors import UsageError

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"
_TARGET_KEYS = {"pid", "pids", "all", "match", "service", "watch", "trace", "monitor", "capture_args",
                "capture_result", "max_value", "redact", "regex", "max_match", "overhead_budget",
                "profile", "rate_hz"}
_TOP_KEYS = {"interval", "metrics_address", "spans_file", "keep_agent", "attach_timeout", "method", "targets",
             "overhead_budget", "forget_after", "by_service", "pyroscope_url"}
DEFAULT_FORGET_AFTER = 300.0
MAX_PROFILE_RATE = 1000  # Hz, as the agent's sampler takes (agent/protocol.py MAX_TOP_RATE)


@dataclass
class TargetRule:
    """Which processes, and what to install in each."""

    pids: list[int] = field(default_factory=list)
    all: bool = False
    match: str | None = None
    service: str | None = None
    watch: list[Any] = field(default_factory=list)
    trace: list[Any] = field(default_factory=list)
    monitor: list[Any] = field(default_factory=list)
    capture_args: bool = True
    capture_result: bool = True
    max_value: int = 256
    redact: list[str] = field(default_factory=list)
    regex: bool = False
    max_match: int = 50
    overhead_budget: float | None = None  # percent; None: the top-level setting, else the agent's default
    profile: bool = False  # a continuous profile of the target (exporters/profiles.py)
    rate_hz: int | None = None  # its sampling rate; None: the agent's default (protocol.DEFAULT_PROFILE_RATE)

    def agent_args(self, interval: float) -> dict[str, Any]:
        """The ``export`` agent command's arguments for this rule."""
        args = {"watch": self.watch, "trace": self.trace, "monitor": self.monitor, "interval": interval,
                "capture_args": self.capture_args, "capture_result": self.capture_result,
                "max_value": self.max_value, "redact": self.redact, "regex": self.regex,
                "max_match": self.max_match}
        if self.overhead_budget is not None:
            args["overhead_budget"] = self.overhead_budget
        if self.profile:
            args["profile"] = True
            if self.rate_hz is not None:
                args["profile_rate"] = self.rate_hz
        return args

    def selects(self, pid: int, cmdline: str) -> bool:
        if pid in self.pids or self.all:
            return True
        return self.match is not None and re.search(self.match, cmdline) is not None


@dataclass
class ExportConfig:
    rules: list[TargetRule]
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    interval: float = 5.0
    spans_file: str | None = None
    keep_agent: bool = False
    attach_timeout: float = 10.0
    method: str = "auto"
    forget_after: float = DEFAULT_FORGET_AFTER  # s a gone target's series stay before they leave /metrics
    by_service: bool = False  # metrics per service without the pid label
    pyroscope_url: str | None = None  # where continuous profiles also go (Pyroscope's /ingest), as pprof


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"metrics address {text!r} is not HOST:PORT", "For example --metrics-address 0.0.0.0:9464.")
    return host.strip("[]") or "0.0.0.0", int(port)


def _read_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.9/3.10 clients
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read the config file {path}: {exc.strerror}", "Check the --config path.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"the config file {path} is not valid TOML: {exc}", "Fix the file and retry.") from None


def _rule(raw: Any, where: str) -> TargetRule:
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be a table", "Write [[targets]] tables with pid/all/match and patterns.")
    unknown = set(raw) - _TARGET_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                         f"Known keys: {', '.join(sorted(_TARGET_KEYS))}.")
    data = dict(raw)
    pids = list(data.pop("pids", []))
    if "pid" in data:
        pids.append(data.pop("pid"))
    if not all(type(p) is int and p > 0 for p in pids):
        raise UsageError(f"{where}: pid/pids must be positive integers, got {pids!r}", "")
    try:
        rule = TargetRule(pids=pids, **data)
    except TypeError as exc:
        raise UsageError(f"{where}: {exc}", "") from None
    check_rule(rule, where)
    return rule


def check_rule(rule: TargetRule, where: str) -> None:
    if not (rule.pids or rule.all or rule.match):
        raise UsageError(f"{where} selects no process", "Give --pid PID, --all or --match REGEX (pid/all/match in TOML).")
    if not (rule.watch or rule.trace or rule.monitor):
        raise UsageError(f"{where} installs nothing", "Give at least one --watch, --trace or --monitor pattern.")
    if rule.match is not None:
        try:
            re.compile(rule.match)
        except re.error as exc:
            raise UsageError(f"{where}: --match {rule.match!r} is not a regular expression: {exc}", "") from None
    check_budget(rule.overhead_budget, where)
    if type(rule.profile) is not bool:
        raise UsageError(f"{where}: profile must be true or false, got {rule.profile!r}", "For example profile = true.")
    if rule.rate_hz is not None and (type(rule.rate_hz) is not int or not 1 <= rule.rate_hz <= MAX_PROFILE_RATE):
        raise UsageError(f"{where}: rate_hz must be a whole number of Hz from 1 to {MAX_PROFILE_RATE}, got {rule.rate_hz!r}",
                         "For example --profile-rate 19 (the default): higher rates cost the target more.")
    for key in ("watch", "trace", "monitor"):
        for item in getattr(rule, key):
            if not (isinstance(item, str) or (isinstance(item, dict) and isinstance(item.get("pattern"), str))):
                raise UsageError(f"{where}: each {key} entry is a pattern or {{pattern = ...}}, got {item!r}", "")


def check_budget(budget: Any, where: str) -> None:
    if budget is not None and (type(budget) not in (int, float) or not 0 <= budget <= 100):
        raise UsageError(f"{where}: overhead_budget must be a percentage from 0 to 100, got {budget!r}",
                         "For example --overhead-budget 5 (the default); 0 turns the overhead governor off.")


def load(path: str | None, quick: TargetRule | None, overrides: dict[str, Any]) -> ExportConfig:
    """The file (if any), then the quick-form target rule and flag overrides on top."""
    raw: dict[str, Any] = _read_toml(path) if path else {}
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}", f"Known: {', '.join(sorted(_TOP_KEYS))}.")
    rules = [_rule(r, f"{path} [[targets]] #{i + 1}") for i, r in enumerate(raw.get("targets", []))]
    if quick is not None:
        check_rule(quick, "the command line")
        rules.append(quick)
    if not rules:
        raise UsageError("nothing to export", "Give --pid/--all/--match with --watch/--trace/--monitor, or --config FILE.")
    settings = {k: v for k, v in raw.items() if k != "targets"}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    # --profile and --profile-rate on the command line profile every target, the file's too.
    profile_all, rate = settings.pop("profile", None), settings.pop("profile_rate", None)
    for rule in rules:
        if profile_all:
            rule.profile = True
        if rate is not None and rule.rate_hz is None:
            rule.rate_hz = rate
        check_rule(rule, "the command line" if rule is quick else f"{path} [[targets]]")
    budget = settings.get("overhead_budget")
    check_budget(budget, "overhead_budget")
    for rule in rules:
        if rule.overhead_budget is None:
            rule.overhead_budget = budget
    host, port = parse_address(str(settings.pop("metrics_address", DEFAULT_METRICS_ADDRESS)))
    interval = settings.get("interval", 5.0)
    if type(interval) not in (int, float) or interval < 0.1:
        raise UsageError(f"interval must be a number of seconds >= 0.1, got {interval!r}", "")
    forget_after = settings.get("forget_after", DEFAULT_FORGET_AFTER)
    if type(forget_after) not in (int, float) or forget_after < 0:
        raise UsageError(f"forget_after must be a number of seconds >= 0, got {forget_after!r}",
                         "For example --forget-after 300 (the default).")
    pyroscope_url = settings.get("pyroscope_url")
    if pyroscope_url is not None and not (isinstance(pyroscope_url, str)
                                          and urlsplit(pyroscope_url).scheme in ("http", "https")
                                          and urlsplit(pyroscope_url).netloc):
        raise UsageError(f"pyroscope_url must be an http(s) URL, got {pyroscope_url!r}",
                         "For example --pyroscope-url http://pyroscope:4040.")
    if pyroscope_url and not any(rule.profile for rule in rules):
        raise UsageError("a Pyroscope URL is given but no target is profiled",
                         "Add --profile (profile = true in a [[targets]] table).")
    return ExportConfig(rules=rules, pyroscope_url=pyroscope_url, metrics_host=host, metrics_port=port, interval=float(interval),
                        forget_after=float(forget_after), by_service=bool(settings.get("by_service", False)),
                        spans_file=settings.get("spans_file"), keep_agent=bool(settings.get("keep_agent", False)),
                        attach_timeout=float(settings.get("attach_timeout", 10.0)),
                        method=str(settings.get("method", "auto")))
