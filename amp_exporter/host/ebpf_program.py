"""The in-kernel event counter: which tracepoints feed which event family, and its C source.

The families mirror what the connector's own eBPF programs watch (process exec, fork and
exit; file open, create, delete, rename, read, write, close; network connect, accept,
listen, send, receive), so our pressure figure follows the load the connector absorbs.
We use stable tracepoints (`sched:*`, `syscalls:sys_enter_*`), never kprobes: they are a
kernel ABI, and some kernels have no kprobes at all.

The loader runs on whatever bcc the host has (Debian 11's is 0.18; RHEL 8's is for its
Python 3.6 only), so the text uses nothing bcc 0.2 lacked (by bcc's history;
compiled and run here with 0.18 and 0.26): maps declared with BPF_TABLE (BPF_PERCPU_HASH
came in 0.19, BPF_PERCPU_ARRAY in 0.4), entries created with update() (lookup_or_try_init
came in 0.12), and plain functions the loader attaches itself (TRACEPOINT_PROBE would have
bcc attach them, and bcc before 0.26 finds tracefs only under /sys/kernel/debug).

Each hit adds one to a per-CPU array slot (no atomics, no trip to user space); one hit in
TOP_SAMPLE per CPU and family also adds TOP_SAMPLE to a per-CPU hash keyed by command
name, bounded in size, for the top processes (an estimate, exact enough for the busiest).

The loader imports this module, so it stays Python 3.6: no PEP 563, and the annotations
are strings (PEP 585/604 generics are evaluated at run time otherwise).
"""

# family -> tracepoints ("category:event"); a tracepoint missing on a kernel is skipped.
FAMILIES: "dict[str, tuple[str, ...]]" = {
    "process_exec": ("sched:sched_process_exec",),
    "process_fork": ("sched:sched_process_fork",),
    "process_exit": ("sched:sched_process_exit",),
    "file_open": ("syscalls:sys_enter_open", "syscalls:sys_enter_openat",
                  "syscalls:sys_enter_openat2"),
    "file_create": ("syscalls:sys_enter_creat", "syscalls:sys_enter_mknod",
                    "syscalls:sys_enter_mknodat", "syscalls:sys_enter_link",
                    "syscalls:sys_enter_linkat", "syscalls:sys_enter_symlink",
                    "syscalls:sys_enter_symlinkat", "syscalls:sys_enter_mkdir",
                    "syscalls:sys_enter_mkdirat"),
    "file_delete": ("syscalls:sys_enter_unlink", "syscalls:sys_enter_unlinkat",
                    "syscalls:sys_enter_rmdir"),
    "file_rename": ("syscalls:sys_enter_rename", "syscalls:sys_enter_renameat",
                    "syscalls:sys_enter_renameat2"),
    "file_read": ("syscalls:sys_enter_read", "syscalls:sys_enter_readv",
                  "syscalls:sys_enter_pread64", "syscalls:sys_enter_preadv"),
    "file_write": ("syscalls:sys_enter_write", "syscalls:sys_enter_writev",
                   "syscalls:sys_enter_pwrite64", "syscalls:sys_enter_pwritev",
                   "syscalls:sys_enter_truncate", "syscalls:sys_enter_ftruncate"),
    "file_close": ("syscalls:sys_enter_close",),
    "net_connect": ("syscalls:sys_enter_connect",),
    "net_accept": ("syscalls:sys_enter_accept", "syscalls:sys_enter_accept4"),
    "net_listen": ("syscalls:sys_enter_listen",),
    "net_send": ("syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg",
                 "syscalls:sys_enter_sendmmsg"),
    "net_receive": ("syscalls:sys_enter_recvfrom", "syscalls:sys_enter_recvmsg",
                    "syscalls:sys_enter_recvmmsg"),
}
# What each family counts, for docs/metrics.md (one entry per family; a test checks it).
FAMILY_HELP: "dict[str, str]" = {
    "process_exec": "programs started (a successful execve/execveat)",
    "process_fork": "processes and threads created (fork, vfork, clone)",
    "process_exit": "processes and threads that ended",
    "file_open": "files opened (calls, successful or not)",
    "file_create": "files, directories, links and device nodes created (calls)",
    "file_delete": "files and directories removed (calls)",
    "file_rename": "files moved or renamed (calls)",
    "file_read": "reads from any descriptor: files, pipes and sockets alike (calls)",
    "file_write": "writes to any descriptor, and truncations (calls)",
    "file_close": "descriptors closed (calls)",
    "net_connect": "outgoing connections started (calls, any socket family)",
    "net_accept": "incoming connections accepted (calls)",
    "net_listen": "sockets put into the listening state (calls)",
    "net_send": "datagrams and messages sent with send*/sendto/sendmsg (calls)",
    "net_receive": "datagrams and messages received with recv*/recvfrom/recvmsg (calls)",
}
# The families the procfs fallback can tell, and from what.
PROCFS_FAMILIES: "dict[str, str]" = {"process_fork": "proc/stat `processes` (forks since boot)"}
FAMILY_NAMES = tuple(FAMILIES)
# One more slot in the counts array: hits whose command could not enter the full hash.
DROPPED_SLOT = len(FAMILY_NAMES)
COMM_LEN = 16
TOP_ENTRIES = 1024

# One event in TOP_SAMPLE (a power of two) is attributed to its command.
TOP_SAMPLE = 16

_HEAD = f"""
#define SAMPLE {TOP_SAMPLE}
BPF_TABLE("percpu_array", u32, u64, counts, {len(FAMILY_NAMES) + 1});
struct comm_key {{ char comm[{COMM_LEN}]; }};
BPF_TABLE("percpu_hash", struct comm_key, u64, by_comm, {TOP_ENTRIES});

static __always_inline int hit(u32 family) {{
    u64 *count = counts.lookup(&family);
    if (!count)
        return 0;
    (*count)++;
    /* Attribute one event in SAMPLE to its command: the hash update costs more than the
       count, and the busiest commands, the ones that matter, are found all the same. */
    if (*count & (SAMPLE - 1))
        return 0;
    struct comm_key key = {{}};
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    u64 *per_comm = by_comm.lookup(&key);
    if (!per_comm) {{
        /* Create it: update() fails only when the table is full. (bcc's increment()
           creates no entry in a per-CPU hash.) Only this CPU writes its own slot, so
           another CPU creating the entry meanwhile loses nothing. */
        u64 zero = 0;
        by_comm.update(&key, &zero);
        per_comm = by_comm.lookup(&key);
    }}
    if (per_comm) {{
        (*per_comm) += SAMPLE;
    }} else {{
        u32 dropped = {DROPPED_SLOT};
        u64 *d = counts.lookup(&dropped);
        if (d)
            (*d) += SAMPLE;
    }}
    return 0;
}}
"""


def function_name(tracepoint: str) -> str:
    """The C function counting TRACEPOINT ("category:event"). Not bcc's tracepoint__
    prefix: bcc would attach those itself, through a tracefs path old versions get wrong."""
    category, event = tracepoint.split(":")
    return f"count__{category}__{event}"


def source(available: "set[str] | frozenset[str]") -> "tuple[str, list[str]]":
    """The C text for the tracepoints this kernel has, and their list (in the order of
    FAMILIES); each is counted by function_name(tracepoint)."""
    parts = [_HEAD]
    attached = []
    for index, (family, tracepoints) in enumerate(FAMILIES.items()):
        for tp in tracepoints:
            if tp not in available:
                continue
            parts.append(f"int {function_name(tp)}(void *ctx) {{ return hit({index}); }}"
                         f" /* {family} */\n")
            attached.append(tp)
    return "".join(parts), attached
