"""Signal handling of the study's pool workers (``centernet.ablation.launch``), in real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from tests.conftest import REPO

# A pool worker that exits normally (the pool's stop sentinel) while the launcher's SIGTERM arrives: the
# signal lands in an exit callback registered before the pool initialiser ran, as torch's are.
EXITING_WORKER = textwrap.dedent(
    """
    import atexit, os, queue, signal, time
    from centernet.ablation.launch import _claim_device

    def sigterm_during_exit():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal is handled here
        print("survived the signal", flush=True)

    atexit.register(sigterm_during_exit)
    slots = queue.Queue()
    slots.put(0)
    _claim_device(slots, [])
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # waiting for a run: SIGTERM exits quietly
    """
)


def test_sigterm_while_an_idle_worker_exits_ends_it_without_a_traceback() -> None:
    done = subprocess.run([sys.executable, "-c", EXITING_WORKER], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert "Traceback" not in done.stderr and "SystemExit" not in done.stderr, done.stderr
    assert "survived" not in done.stdout
