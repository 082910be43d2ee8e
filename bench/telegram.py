"""Telegram decision latency: with every heartbeat at one hour, how long from pressing Approve on a
phone to the deploy workflow's claim, against typing `hq approve` in the same run.

A real `hq run` process serves the bundled roster with every heartbeat at 1 h and
polls a fake Bot API on 127.0.0.1 (python-telegram-bot against it, as in the tests).
Issues wait in pending_approval; half are approved with a real `hq approve` process,
half with a signed Approve button pressed in the fake, one at a time (the next once
the previous is deployed). Latency is end to end on the host's clock: from just
before the command starts or the press is queued, to the `approved -> deploying`
claim event. The ratio is the press's p95 against the command's p95.

    python -m bench.telegram [--approvals 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import fresh_database, one, percentile, verdict
from bench.wake import HQ, hour_long_roster, seed

if TYPE_CHECKING:
    import psycopg

TOKEN = "123456789:AAbenchTOKENbenchTOKENbenchTOKENbe"
CHAT = 4242
APPROVER = 1001


def claimed_at(conn: psycopg.Connection, issue: int, timeout: float = 30.0) -> float | None:
    """The claim event's time (epoch seconds) once the deploy is over; None if it never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            """SELECT extract(epoch FROM claim.created_at), (SELECT status FROM issues WHERE id = %(id)s)
                 FROM issue_events claim
                WHERE claim.issue_id = %(id)s AND claim.from_status = 'approved' AND claim.to_status = 'deploying'""",
            {"id": issue},
        ).fetchone()
        if row is not None and row[1] in ("done", "todo", "blocked"):
            return float(row[0])
        time.sleep(0.01)
    return None


def press(approval_id: int) -> dict[str, object]:
    """The update Telegram sends when the approver presses Approve on the approval's message."""
    from channels.buttons import Button, sign, signing_key
    from config.settings import load_settings

    data = sign(signing_key(load_settings()), Button("ap", approval_id, 0))
    chat = {"id": CHAT, "type": "private", "first_name": "Alice", "username": "alice"}
    message = {"message_id": approval_id, "date": int(time.time()), "chat": chat, "text": "Approval needed"}
    sender = {"id": APPROVER, "is_bot": False, "first_name": "Alice", "username": "alice"}
    return {
        "callback_query": {
            "id": str(approval_id),
            "from": sender,
            "message": message,
            "chat_instance": "1",
            "data": data,
        }
    }


def main(approvals: int = 20) -> float:
    import psycopg

    from tests.fakes.telegram_server import FakeTelegram

    fake = FakeTelegram(TOKEN).start()
    telegram = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_CHAT_ID": str(CHAT),
        "TELEGRAM_API_BASE": fake.url,
        "HQ_TELEGRAM_APPROVERS": str(APPROVER),
    }
    os.environ.update(telegram)  # for signing the presses here as `hq run` verifies them
    latencies: dict[str, list[float]] = {"cli": [], "telegram": []}
    missed = 0
    try:
        with fresh_database("hq_bench_telegram") as db:
            env = {**os.environ, "HQ_LOG_LEVEL": "warning", "HQ_ROLES_DIR": str(hour_long_roster(db.root / "roles"))}
            subprocess.run([str(HQ), "agents", "sync"], env=env, check=True, capture_output=True)
            ids = seed(db.libpq, Path(env["HQ_DATA_DIR"]), approvals * 2)
            worker = subprocess.Popen([str(HQ), "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                fake.wait_until_polling(timeout=60)
                time.sleep(6.0)  # every agent's first beat is over; the next ones are an hour away
                with psycopg.connect(db.libpq, autocommit=True) as conn:
                    for index, issue in enumerate(ids):
                        way = "cli" if index % 2 == 0 else "telegram"  # alternate: both see the same load
                        started = time.time()
                        if way == "cli":
                            subprocess.run([str(HQ), "approve", str(issue)], env=env, check=True, capture_output=True)
                        else:
                            approval = one(
                                conn.execute("SELECT id FROM approvals WHERE issue_id = %s", (issue,)).fetchone()
                            )[0]
                            fake.push(press(approval))
                        claimed = claimed_at(conn, issue)
                        if claimed is None:
                            missed += 1
                        else:
                            latencies[way].append((claimed - started) * 1000)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
    finally:
        fake.stop()
        for name in telegram:
            os.environ.pop(name, None)
    cli, phone = latencies["cli"], latencies["telegram"]
    print(f"approvals: {approvals} by `hq approve`, {approvals} by an Approve button; missed (> 30 s): {missed}")
    for name, values in (("hq approve", cli), ("Telegram Approve", phone)):
        print(
            f"{name:>16} -> deploy claim: p50 {percentile(values, 0.5):.0f} ms, "
            f"p95 {percentile(values, 0.95):.0f} ms, max {max(values):.0f} ms (heartbeats: 3,600,000 ms)"
        )
    ratio = percentile(phone, 0.95) / percentile(cli, 0.95)
    print(verdict("Telegram press p95 vs `hq approve` p95", ratio, "<= 1.0", ratio <= 1.0 and not missed))
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=20)
    main(parser.parse_args().approvals)
