"""The one door to the host: readers and parsers of a host tree (proc, sys, etc, the
connector's files, its processes, sockets and BPF objects, ampcli's answer) and what is
inferred from them (machinery.py). Every path goes through paths.HostPaths, so the same
code reads a live host, a container's /host or an example tree.

Nothing here makes metrics or imports the collectors: readers raise OSError as open()
does and parsers ValueError, and the collector layer turns those into its reasons.
"""
