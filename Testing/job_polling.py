"""Test helper: poll a panel's background training job (``SlicerCADLib.train_job.TrainingJob``) until a
condition holds, cancelling it (and failing) after a timeout."""
import time

TIMEOUT_S = 240


def poll_until(job, done, timeout=TIMEOUT_S) -> tuple:
    """``(status, every status seen)`` once ``done(status)``; cancels the job and fails after ``timeout`` s."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        status = job.poll()
        seen.append(status)
        if done(status):
            return status, seen
        time.sleep(0.2)
    job.cancel()
    raise AssertionError(f"training job did not reach the expected state in {timeout} s: {seen[-1]}")


def cancel_and_check_tree(job) -> dict:
    """Cancel a running job and assert that its whole process tree has ended; returns the final status."""
    import psutil

    root = psutil.Process(job.runner.pid)
    tree = [root, *root.children(recursive=True)]
    final = job.cancel()
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == [] and len(gone) == len(tree)
    return final
