"""runtime.stdout_silenced on several threads: a service runs one predictor
per inference thread, and their silenced runs overlap."""
import os
import threading

from paddlespeech.cls.runtime import stdout_silenced


def test_overlapping_silenced_runs_restore_stdout(capfd):
    """A enters, B enters, A leaves while B still runs, then B leaves:
    output stays silenced until the last one leaves and is visible after."""
    b_inside, a_left, checked = (threading.Event() for _ in range(3))

    def a():
        with stdout_silenced():
            b_inside.wait(5)
        a_left.set()

    def b():
        with stdout_silenced():
            b_inside.set()
            a_left.wait(5)
            os.write(1, b'while B runs\n')
            checked.set()

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert checked.is_set()
    os.write(1, b'after both\n')
    assert capfd.readouterr().out == 'after both\n'
