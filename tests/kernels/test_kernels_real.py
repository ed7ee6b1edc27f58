"""Real kernels in real sandbox containers, driven by a real kernel manager process through Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kernels import protocol, selectors, services
from kernels.errors import CellRefused
from tests.kernels.conftest import Page, cell_run, execution_wait, kernel_containers

pytestmark = [pytest.mark.docker, pytest.mark.redis]

PNG_CELL = """
import struct, zlib
from IPython.display import Image, display
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\\x00" + bytes([x * 16, 0, 255 - x * 16]) * 16 for x in range(16))
png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
display(Image(data=png))
"""

HTML_CELL = """
from IPython.display import HTML, display
display(HTML("<table><tr><th>seed</th><td>42</td></tr></table><script>alert(1)</script>"))
"""


def state_of(page: Page, *, user_id: int = 1) -> selectors.KernelState:
    return selectors.kernel_state(client=protocol.redis_client(), user_id=user_id, lesson_id=page.id)


def test_it_keeps_state_across_the_cells_of_a_page(kernel_manager):
    kernel_manager.start()
    page = Page(id=101)

    first = cell_run(page, "x = 41")
    second = cell_run(page, "x += 1\nprint('x is', x)\nx")

    assert first.of("status")[0]["state"] == "starting"
    assert first.done["status"] == "ok"
    assert second.stdout() == "x is 42\n"
    assert second.of("text") == [{"type": "text", "text": "42"}]
    assert second.done["status"] == "ok"
    assert second.done["execution_count"] == 2


def test_it_streams_errors_with_their_traceback_as_the_learners(kernel_manager):
    kernel_manager.start()

    outcome = cell_run(Page(id=102), "def f():\n    return 1 / 0\nf()")

    assert outcome.done["status"] == "error"
    [error] = outcome.of("error")
    assert error["ename"] == "ZeroDivisionError"
    assert "return 1 / 0" in error["traceback"]
    assert "\x1b[" not in error["traceback"]


def test_it_sends_rich_output_sanitised(kernel_manager):
    kernel_manager.start()
    page = Page(id=103)

    image = cell_run(page, PNG_CELL)
    table = cell_run(page, HTML_CELL)

    [png] = image.of("image")
    assert png["mime"] == "image/png"
    assert png["data"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
    [html] = table.of("html")
    assert "<table>" in html["html"] and "<td>42</td>" in html["html"]
    assert "script" not in html["html"] and "alert" not in html["html"]


def test_it_checks_a_cell_against_its_expected_value(kernel_manager):
    kernel_manager.start()
    page = Page(id=104, code_cells=[{"index": 0, "check": "total == 55"}])

    wrong = cell_run(page, "total = sum(range(10))")
    right = cell_run(page, "total = sum(range(11))")
    missing = cell_run(Page(id=105, code_cells=[{"index": 0, "check": "total == 55"}]), "print('no total')")

    assert wrong.done["check"] == {"passed": False, "detail": "the check is false"}
    assert right.done["check"] == {"passed": True, "detail": "the check is true"}
    assert missing.done["check"]["passed"] is False
    assert "NameError" in missing.done["check"]["detail"]


def test_it_accepts_a_check_met_with_arrays_instead_of_lists(kernel_manager):
    # The lesson's check compares two orders with ==; a learner who keeps numpy arrays (no .tolist()) meets it too.
    kernel_manager.start()
    page = Page(id=126, code_cells=[{"index": 0, "check": "order_a == order_b"}])

    same = cell_run(
        page,
        "import numpy as np\norder_a = np.random.default_rng(7).permutation(10)\n"
        "order_b = np.random.default_rng(7).permutation(10)",
    )
    different = cell_run(page, "order_b = np.random.default_rng(8).permutation(10)")

    assert same.done["check"] == {"passed": True, "detail": "the check is true"}
    assert different.done["check"] == {"passed": False, "detail": "the check is false"}


def test_it_stops_an_infinite_loop_on_interrupt_and_keeps_the_kernel(kernel_manager):
    kernel_manager.start()
    page = Page(id=106)
    cell_run(page, "kept = 'still here'")

    execution_id = services.cell_run(user_id=1, lesson=page, index=0, code="while True:\n    pass")
    client = protocol.redis_client()
    while not any(
        i["type"] == "status"
        for i in selectors.execution_read(client=client, user_id=1, execution_id=execution_id, after=0).items
    ):
        time.sleep(0.05)
    time.sleep(0.3)
    services.kernel_interrupt(user_id=1, lesson=page)
    looped = execution_wait(execution_id, user_id=1)
    after = cell_run(page, "kept")

    assert looped.done["status"] == "interrupted"
    assert looped.of("error")[0]["ename"] == "KeyboardInterrupt"
    assert after.of("text") == [{"type": "text", "text": "'still here'"}]


def test_it_interrupts_a_cell_that_outruns_its_time_limit_and_says_so(kernel_manager):
    kernel_manager.start(KERNEL_CELL_TIMEOUT_SECONDS=2)
    page = Page(id=107)

    outcome = cell_run(page, "import time\nwhile True:\n    time.sleep(0.01)")
    after = cell_run(page, "1 + 1")

    assert outcome.done["status"] == "limit"
    assert "longer than 2 s" in outcome.done["message"]
    assert after.of("text") == [{"type": "text", "text": "2"}]


def test_it_contains_a_fork_bomb_and_names_the_process_limit(kernel_manager, docker_client):
    kernel_manager.start()
    page = Page(id=108)

    outcome = cell_run(page, "import os\nwhile True:\n    os.fork()")

    assert outcome.done["status"] == "limit"
    assert "processes" in outcome.done["message"] and "128" in outcome.done["message"]
    assert state_of(page).state == "gone"
    assert kernel_containers(docker_client) == []


def test_it_contains_a_memory_bomb_and_names_the_memory_limit(kernel_manager, docker_client):
    kernel_manager.start()
    page = Page(id=109)

    outcome = cell_run(page, "hog = bytearray(2 * 1024 ** 3)")

    # Either Python is refused the memory (MemoryError, the kernel lives) or the kernel is killed for it.
    if outcome.done["status"] == "error":
        assert outcome.of("error")[0]["ename"] == "MemoryError"
    else:
        assert outcome.done["status"] == "limit"
        assert "256 MB" in outcome.done["message"]
        assert state_of(page).state == "gone"
    touched = cell_run(
        Page(id=110), "hog = bytearray(400 * 1024 ** 2)\nfor i in range(0, len(hog), 4096):\n    hog[i] = 1"
    )
    assert touched.done["status"] in ("limit", "error")
    if touched.done["status"] == "limit":
        assert "256 MB" in touched.done["message"]


def test_it_gives_the_kernel_no_network_but_loopback(kernel_manager):
    kernel_manager.start()

    outcome = cell_run(Page(id=111), "import os\nprint(sorted(os.listdir('/sys/class/net')))")

    assert outcome.stdout() == "['lo']\n"


def test_it_keeps_the_learner_out_of_the_kernel_folder(kernel_manager):
    kernel_manager.start()

    outcome = cell_run(Page(id=112), "open('/kernel/planted', 'w')")

    assert outcome.of("error")[0]["ename"] == "PermissionError"


def test_it_culls_an_idle_kernel_and_tells_the_page_to_restart(kernel_manager, docker_client):
    kernel_manager.start(KERNEL_IDLE_SECONDS=2)
    page = Page(id=113)
    cell_run(page, "x = 1")

    deadline = time.monotonic() + 30
    while state_of(page).state != "gone" and time.monotonic() < deadline:
        time.sleep(0.2)

    assert state_of(page).state == "gone"
    assert "without use" in state_of(page).message
    assert kernel_containers(docker_client) == []
    with pytest.raises(CellRefused) as refused:
        services.cell_run(user_id=1, lesson=page, index=0, code="x")
    assert refused.value.code == "kernel_gone"
    restarted = execution_wait(services.kernel_restart(user_id=1, lesson=page), user_id=1)
    assert restarted.done["status"] == "ok"
    assert cell_run(page, "x").of("error")[0]["ename"] == "NameError"


def test_it_refuses_a_kernel_past_the_hosts_cap_with_a_clear_message(kernel_manager):
    kernel_manager.start(KERNELS_PER_HOST=1)
    cell_run(Page(id=114), "1", user_id=1)

    with pytest.raises(CellRefused) as refused:
        services.cell_run(user_id=2, lesson=Page(id=115), index=0, code="1")

    assert refused.value.code == "host_full"
    assert refused.value.status == 503
    assert "All 1 kernels" in refused.value.message


def test_it_refuses_a_kernel_past_the_learners_cap_with_a_clear_message(kernel_manager, settings):
    settings.KERNELS_PER_LEARNER = 1
    kernel_manager.start(KERNELS_PER_LEARNER=1)
    cell_run(Page(id=116), "1", user_id=3)

    with pytest.raises(CellRefused) as refused:
        services.cell_run(user_id=3, lesson=Page(id=117), index=0, code="1")

    assert refused.value.code == "learner_cap"
    assert refused.value.status == 429
    assert "1 kernels running" in refused.value.message
    assert cell_run(Page(id=117), "1", user_id=4).done["status"] == "ok"  # another learner is not affected


def test_it_survives_a_restart_of_the_kernel_manager(kernel_manager, docker_client):
    kernel_manager.start()
    page = Page(id=118)
    cell_run(page, "x = 1")
    running = execution_wait(services.cell_run(user_id=1, lesson=Page(id=119), index=0, code="1"), user_id=1)
    assert running.done["status"] == "ok"
    long = services.cell_run(user_id=1, lesson=page, index=0, code="import time\ntime.sleep(30)")
    time.sleep(0.5)

    kernel_manager.kill()
    kernel_manager.start()

    cut = execution_wait(long, user_id=1)
    assert cut.done["status"] == "gone"
    assert "Restart the kernel" in cut.done["message"]
    assert state_of(page).state == "gone"
    assert len(kernel_containers(docker_client)) == 0  # the new manager removed what the dead one left
    with pytest.raises(CellRefused) as refused:
        services.cell_run(user_id=1, lesson=page, index=0, code="x")
    assert refused.value.code == "kernel_gone"
    assert execution_wait(services.kernel_restart(user_id=1, lesson=page), user_id=1).done["status"] == "ok"
    assert cell_run(page, "x = 2\nx").of("text") == [{"type": "text", "text": "2"}]


def test_it_runs_two_learners_cells_at_once(kernel_manager):
    kernel_manager.start()
    results: dict[int, str] = {}

    def learner(user_id: int) -> None:
        outcome = cell_run(Page(id=120), f"import time\ntime.sleep(1)\nprint({user_id})", user_id=user_id)
        results[user_id] = outcome.stdout()

    threads = [threading.Thread(target=learner, args=(user_id,)) for user_id in (5, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == {5: "5\n", 6: "6\n"}


def test_it_routes_each_learners_cells_to_the_host_holding_their_kernel(kernel_manager, second_kernel_manager):
    # Two managers sharing only Redis (and here an engine), one kernel of room each: the two learners' kernels
    # land on different hosts, and every later cell must reach the kernel that holds its state.
    kernel_manager.start(host="host-a", KERNELS_PER_HOST=1)
    second_kernel_manager.start(host="host-b", KERNELS_PER_HOST=1)
    first, second = Page(id=121), Page(id=122)
    cell_run(first, "who = 'learner 7'", user_id=7)
    cell_run(second, "who = 'learner 8'", user_id=8)

    for _ in range(3):
        assert cell_run(first, "who", user_id=7).of("text") == [{"type": "text", "text": "'learner 7'"}]
        assert cell_run(second, "who", user_id=8).of("text") == [{"type": "text", "text": "'learner 8'"}]
    instances = {state_of(first, user_id=7).instance, state_of(second, user_id=8).instance}
    assert len(instances) == 2


def test_it_keeps_kernels_across_a_redis_restart(kernel_manager, redis_server):
    kernel_manager.start()
    page = Page(id=123)
    cell_run(page, "kept = 5")

    redis_server.restart()
    deadline = time.monotonic() + 30
    while not protocol.managers_read(client=protocol.redis_client()) and time.monotonic() < deadline:
        time.sleep(0.2)

    assert cell_run(page, "kept * 2").of("text") == [{"type": "text", "text": "10"}]


def test_it_stops_a_kernel_that_writes_garbage_on_its_own_socket_and_says_why(kernel_manager):
    kernel_manager.start()
    page = Page(id=124)

    outcome = cell_run(
        page,
        "get_ipython().kernel.iopub_socket.send_multipart([b'not', b'a', b'message'])\n" "import time\ntime.sleep(1)",
    )
    other = cell_run(Page(id=125), "1 + 1", user_id=9)

    assert outcome.done["status"] == "limit"
    assert "cannot read" in outcome.done["message"]
    assert state_of(page).state == "gone"
    assert other.of("text") == [{"type": "text", "text": "2"}]  # the manager itself carried on


def test_it_answers_a_running_cell_when_the_page_restarts_its_kernel(kernel_manager):
    kernel_manager.start()
    page = Page(id=127)
    cell_run(page, "x = 1")
    long = services.cell_run(user_id=1, lesson=page, index=0, code="import time\ntime.sleep(60)")
    queued = services.cell_run(user_id=1, lesson=page, index=0, code="x")
    time.sleep(0.5)

    restarted = execution_wait(services.kernel_restart(user_id=1, lesson=page), user_id=1)
    cut, dropped = execution_wait(long, user_id=1), execution_wait(queued, user_id=1)

    assert restarted.done["status"] == "ok"
    assert cut.done["status"] == "gone"
    assert "restarted or stopped" in cut.done["message"]
    assert dropped.done["status"] == "gone"
    assert cell_run(page, "x").of("error")[0]["ename"] == "NameError"  # a new kernel, and a working one


def test_it_stops_a_kernel_when_the_learner_asks(kernel_manager, docker_client):
    kernel_manager.start()
    page = Page(id=128)
    cell_run(page, "x = 1")

    services.kernel_stop(user_id=1, lesson=page)
    deadline = time.monotonic() + 30
    while state_of(page).state != "gone" and time.monotonic() < deadline:
        time.sleep(0.1)

    assert state_of(page).state == "gone"
    assert "You stopped this kernel" in state_of(page).message
    assert kernel_containers(docker_client) == []


def manager_rss_mb(manager) -> float:
    status = Path(f"/proc/{manager.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


FLOOD = (
    # The IOPub thread's own socket, big frames sent without copies: the kernel's memory stays small while the
    # receiving end must take in 60 MB a message, thirty times over.
    "frame = b'x' * (15 * 1024 * 1024)\n"
    "kernel = get_ipython().kernel\n"
    "sock = kernel.iopub_thread.socket\n"
    "for _ in range(30):\n"
    "    {send}\n"
    "import time\n"
    "time.sleep(3)"
)


def test_it_stops_a_kernel_flooding_its_socket_with_garbage_and_the_manager_takes_none_of_it(kernel_manager):
    kernel_manager.start()
    page = Page(id=129)
    before = manager_rss_mb(kernel_manager)

    outcome = cell_run(page, FLOOD.format(send="sock.send_multipart([b'flood'] + [frame] * 4, copy=False)"))
    other = cell_run(Page(id=130), "6 * 7", user_id=10)

    assert outcome.done["status"] == "limit"
    assert "cannot read" in outcome.done["message"]
    assert state_of(page).state == "gone"
    assert other.of("text") == [{"type": "text", "text": "42"}]
    assert manager_rss_mb(kernel_manager) < before + 50


def test_it_keeps_the_manager_out_of_a_flood_of_signed_messages(kernel_manager):
    # Well-formed messages carrying 60 MB each: the kernel's bridge takes them in (or dies under its memory
    # limit, which stops this kernel with the reason); the manager's memory does not move, other learners go on.
    kernel_manager.start()
    page = Page(id=133)
    before = manager_rss_mb(kernel_manager)

    outcome = cell_run(
        page,
        FLOOD.format(send="kernel.session.send(sock, 'stream', {'name': 'stdout', 'text': 'x'}, buffers=[frame] * 4)"),
    )
    other = cell_run(Page(id=134), "6 * 7", user_id=11)

    assert outcome.done["status"] in ("ok", "limit")
    if outcome.done["status"] == "limit":
        assert "more output at once" in outcome.done["message"]
    assert other.of("text") == [{"type": "text", "text": "42"}]
    assert manager_rss_mb(kernel_manager) < before + 50


def test_it_cuts_one_huge_print_and_keeps_the_kernel(kernel_manager):
    kernel_manager.start()
    page = Page(id=131)

    outcome = cell_run(page, "print('x' * 20_000_000)\nsize = 20_000_000")
    after = cell_run(page, "size")

    assert outcome.done["status"] == "ok"
    assert sum(len(item["text"]) for item in outcome.of("stream")) <= 200_000
    assert any("Output cut" in item["text"] for item in outcome.of("notice"))
    assert after.of("text") == [{"type": "text", "text": "20000000"}]


def test_it_accepts_a_check_ending_in_a_comment(kernel_manager):
    kernel_manager.start()
    page = Page(id=132, code_cells=[{"index": 0, "check": "total == 55  # the sum of 0..10"}])

    outcome = cell_run(page, "total = sum(range(11))")

    assert outcome.done["check"] == {"passed": True, "detail": "the check is true"}


def test_it_starts_one_kernel_for_a_page_whose_first_runs_reach_two_managers(
    kernel_manager, second_kernel_manager, docker_client
):
    kernel_manager.start(host="host-a")
    second_kernel_manager.start(host="host-b")
    page = Page(id=135)

    # Both wait on the shared queue (the page has no kernel yet), so each manager may take one.
    sent = [services.cell_run(user_id=12, lesson=page, index=0, code=code) for code in ("a = 1", "b = 2")]
    outcomes = [execution_wait(execution_id, user_id=12) for execution_id in sent]
    both = cell_run(page, "a + b", user_id=12)

    assert [o.done["status"] for o in outcomes] == ["ok", "ok"]
    assert both.of("text") == [{"type": "text", "text": "3"}]
    assert len(kernel_containers(docker_client)) == 1


def test_it_refuses_a_run_past_the_pages_queue_and_says_to_wait(kernel_manager):
    kernel_manager.start(KERNEL_QUEUED_PER_PAGE=1)
    page = Page(id=136)
    cell_run(page, "import time")

    running = services.cell_run(user_id=1, lesson=page, index=0, code="time.sleep(3)")
    time.sleep(0.5)
    waiting = services.cell_run(user_id=1, lesson=page, index=0, code="1")
    refused = execution_wait(services.cell_run(user_id=1, lesson=page, index=0, code="2"), user_id=1)

    assert refused.done["status"] == "limit"
    assert "1 runs are already waiting" in refused.done["message"]
    assert execution_wait(running, user_id=1).done["status"] == "ok"
    assert execution_wait(waiting, user_id=1).of("text") == [{"type": "text", "text": "1"}]


def test_it_removes_the_kernels_of_a_manager_that_died_under_another_host_name(
    kernel_manager, second_kernel_manager, docker_client
):
    # A re-created container has a new host name: the kernels its dead predecessor left are nobody's to clear at
    # start, so every manager sweeps kernels whose manager has no beat.
    kernel_manager.start(host="host-old")
    cell_run(Page(id=137), "x = 1")
    assert len(kernel_containers(docker_client)) == 1
    kernel_manager.kill()

    second_kernel_manager.start(host="host-new", KERNEL_IDLE_SECONDS=600)
    deadline = time.monotonic() + 90
    while kernel_containers(docker_client) and time.monotonic() < deadline:
        time.sleep(1)

    assert kernel_containers(docker_client) == []


def test_it_stops_a_kernel_whose_code_keeps_the_cpu_busy_after_its_cell(kernel_manager, docker_client):
    # A thread outlives its cell: the cell's time limit never sees it, the idle check does.
    kernel_manager.start()
    page = Page(id=138)

    started = cell_run(
        page,
        "import threading\ndef spin():\n    while True:\n        pass\nthreading.Thread(target=spin, daemon=True).start()",
    )
    deadline = time.monotonic() + 150
    while state_of(page).state != "gone" and time.monotonic() < deadline:
        time.sleep(1)

    assert started.done["status"] == "ok"
    assert state_of(page).state == "gone"
    assert "kept running after its cell had finished" in state_of(page).message
    assert kernel_containers(docker_client) == []


def test_it_reads_ps_cpu_times():
    from kernels.sandbox import _ps_time_seconds

    assert [_ps_time_seconds(t) for t in ("00:00:07", "01:02:03", "2-00:00:01")] == [7, 3723, 172801]


def test_it_keeps_the_kernels_folders_closed_to_other_host_users(kernel_manager):
    kernel_manager.start()
    cell_run(Page(id=139), "1")

    [owner_folder] = list(kernel_manager.kernels_dir.iterdir())

    assert kernel_manager.kernels_dir.stat().st_mode & 0o777 == 0o700
    assert owner_folder.stat().st_mode & 0o777 == 0o700
