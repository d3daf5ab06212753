"""A real single-node SLURM for tests: munge + slurmctld + slurmd started by hand (root, no systemd).

Follows the verified recipe of ``../shared/SCALE_OUT.md``. Only daemons this module started are stopped, by
PID. When a cluster is already up (``sinfo`` answers), it is used as it is and left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")


def slurm_installed() -> bool:
    return all(shutil.which(name) for name in ("sbatch", "squeue", "slurmctld", "slurmd", "munged", "scancel"))


def _answers() -> bool:
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in proc.stdout.split())


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 1024
    return 4096


def _write_config() -> None:
    host = socket.gethostname().split(".")[0]
    for folder in ("/var/spool/slurmctld", "/var/spool/slurmd", "/run/slurm", "/var/log/slurm", "/etc/slurm"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    CONF.write_text(f"""ClusterName=m2stest
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MinJobAge=600
KillWait=5
NodeName={host} CPUs={os.cpu_count()} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")


def _start_munge() -> subprocess.Popen | None:
    if subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
        return None  # already running
    key = Path("/etc/munge/munge.key")
    for folder in ("/etc/munge", "/var/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    if not key.is_file():
        key.write_bytes(os.urandom(1024))
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    proc = subprocess.Popen(["runuser", "-u", "munge", "--", "munged", "-f", "-F"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(50):
        if subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
            return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("munged did not start")


class SlurmCluster:
    """Start (or reuse) the single-node cluster; ``stop()`` ends only what was started here."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self) -> SlurmCluster:
        if _answers():
            return self
        if os.geteuid() != 0:
            raise RuntimeError("starting SLURM needs root")
        _write_config()
        munge = _start_munge()
        if munge:
            self.started.append(munge)
        for daemon in ("slurmctld", "slurmd"):
            self.started.append(subprocess.Popen([daemon, "-D"], stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL))
            time.sleep(1)
        for _ in range(60):
            if _answers():
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError("SLURM did not come up: see /var/log/slurm/slurmctld.log and slurmd.log")

    def stop(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.started.clear()
