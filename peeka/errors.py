"""Every failure the client can report, each with what to do about it and its own exit code.

    PeekaError                      exit 1   base; ``help`` says what to do
    ├── UsageError                  exit 2   bad arguments or input
    ├── NoSuchProcess               exit 3
    ├── NotPython                   exit 4
    ├── UnsupportedVersion          exit 5
    ├── PermissionDenied            exit 6   other user, socket refused
    ├── PtraceRefused               exit 7   CAP_SYS_PTRACE, Yama ptrace_scope, container profiles
    ├── RemoteDebugDisabled         exit 8   PYTHON_DISABLE_REMOTE_DEBUG / -X disable-remote-debug
    ├── GdbMissing                  exit 9
    ├── SymbolsMissing              exit 10  libpython without the symbols gdb needs
    ├── AttachTimeout               exit 11
    ├── AttachFailed                exit 12  the injection ran but no agent came up
    ├── AgentUnavailable            exit 13  no agent, or the connection broke
    ├── ProtocolMismatch            exit 14
    ├── CommandFailed               exit 15  the agent answered with an error
    ├── AgentBusy                   exit 16  the agent serves its limit of clients already
    └── ReadOnly                    exit 17  a change refused: the client or the agent is read-only

Only ``peeka.cli.main`` prints these and exits; everything else raises them.
"""

from __future__ import annotations


class PeekaError(Exception):
    exit_code = 1
    kind = "error"

    def __init__(self, message: str, help: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.help = help

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.kind,
            "message": self.message,
            "help": self.help,
            "exit_code": self.exit_code,
        }


class UsageError(PeekaError):
    exit_code = 2
    kind = "usage"


class NoSuchProcess(PeekaError):
    exit_code = 3
    kind = "no-such-process"


class NotPython(PeekaError):
    exit_code = 4
    kind = "not-python"


class UnsupportedVersion(PeekaError):
    exit_code = 5
    kind = "unsupported-version"


class PermissionDenied(PeekaError):
    exit_code = 6
    kind = "permission-denied"


class PtraceRefused(PeekaError):
    exit_code = 7
    kind = "ptrace-refused"


class RemoteDebugDisabled(PeekaError):
    exit_code = 8
    kind = "remote-debug-disabled"


class GdbMissing(PeekaError):
    exit_code = 9
    kind = "gdb-missing"


class SymbolsMissing(PeekaError):
    exit_code = 10
    kind = "symbols-missing"


class AttachTimeout(PeekaError):
    exit_code = 11
    kind = "attach-timeout"


class AttachFailed(PeekaError):
    exit_code = 12
    kind = "attach-failed"


class AgentUnavailable(PeekaError):
    exit_code = 13
    kind = "agent-unavailable"


class ProtocolMismatch(PeekaError):
    exit_code = 14
    kind = "protocol-mismatch"


class CommandFailed(PeekaError):
    exit_code = 15
    kind = "command-failed"

    def __init__(self, message: str, help: str = "", error_type: str = "", traceback: str = "") -> None:
        super().__init__(message, help)
        self.error_type = error_type
        self.traceback = traceback


PTRACE_HELP = (
    "ptrace was refused. Run peeka as root or as the target's user with CAP_SYS_PTRACE; "
    "check Yama: `cat /proc/sys/kernel/yama/ptrace_scope` (0 allows same-user attach; "
    "`sudo sysctl kernel.yama.ptrace_scope=0`); in Docker add `--cap-add=SYS_PTRACE`; in Kubernetes "
    "add `securityContext.capabilities.add: [SYS_PTRACE]` to the container running peeka and "
    "`shareProcessNamespace: true` to the pod."
)


class AgentBusy(PeekaError):
    exit_code = 16
    kind = "agent-busy"


class ReadOnly(PeekaError):
    """A request that would change the target, refused because the request said read-only (the
    front end holds itself to it: ``peeka mcp`` without --allow-changes, ``export``) or because the
    agent was attached with --read-only. ``refused`` says what; ``by`` is "request" or "agent"."""

    exit_code = 17
    kind = "read-only"

    def __init__(self, message: str, help: str = "", refused: str = "", by: str = "") -> None:
        super().__init__(message, help)
        self.refused = refused
        self.by = by

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "refused": self.refused, "by": self.by}
