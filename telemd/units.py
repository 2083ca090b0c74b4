"""telemd's systemd units: the one list that `telemctl opt-in`, `opt-out`,
`start` and `stop`, journalprobe and the package scripts use.

It imports nothing: the package builds read it with a bare `python3` to
write the lists into their maintainer scripts.
"""

# Started and stopped in this order, as Clear does: the units that activate
# others (sockets, the timer) go first, so that stopping a service is not
# undone by its socket starting it again.
UNITS = (
    "telemd.socket",
    "telemd-control.socket",
    "hprobe.timer",
    "telemd.service",
    "klogscanner.service",
    "journalprobe.service",
    "crashprobe-journal.service",
    "pstoreprobe.service",
)
# hprobe.service is started by its timer alone (starting it would send a
# heartbeat), but it is telemd's all the same: stopped on removal, and its
# failures are not reported by journalprobe.
OWN_UNITS = (*UNITS, "hprobe.service")

if __name__ == "__main__":
    import sys

    print(" ".join(OWN_UNITS if sys.argv[1:] == ["--all"] else UNITS))
