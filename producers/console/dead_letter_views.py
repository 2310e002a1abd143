"""Dead letters: the filtered, paged table, one entry, and replay / purge with confirmation.

Filters are reason, step and since (as `dlq replay --since`: ISO-8601 or 30m, 2h, 7d). A
page reads only its own entries (worker/adapters/dead_letter_pages.py). Replay and purge go
through producers/replay.py exactly as the CLI's do: an entry that failed again after it
was selected is kept.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from producers.console.auth import audit, refuse_if_read_only, services
from worker.adapters.dead_letter_pages import Filter
from worker.adapters.dead_letters import STEPS
from worker.core import reasons
from worker.services import replay

bp = Blueprint("dlq", __name__, url_prefix="/dead-letters")
PAGE_SIZE = 50
# One click touches at most this many entries, so a request ends well inside its time
# limit; the result says how many are left for the next click.
MAX_PER_ACTION = 2000
MAX_ID_CHARS = 200


def _filter_args(source: Any) -> dict[str, str]:
    return {name: str(source.get(name, "")).strip()[:MAX_ID_CHARS]
            for name in ("reason", "step", "since")}


def _filter(args: dict[str, str]) -> Filter:
    """The filter, or a 400 naming what is wrong with it."""
    try:
        since = replay.parse_since(args["since"]) if args["since"] else None
        return Filter(reason=args["reason"] or None, step=args["step"] or None, since=since)
    except ValueError as exc:  # SelectionError is one
        abort(400, f"bad filter: {exc}")


def _page_number(text: str | None, last: int) -> int:
    try:
        number = int(text or "1") if len(text or "") < 12 else last
    except ValueError:
        number = 1
    return min(max(number, 1), last)


@bp.route("")
def index() -> Any:
    s = services()
    args = _filter_args(request.args)
    flt = _filter(args)
    total = s.pages.count(flt)
    last = max(1, -(-total // PAGE_SIZE))
    page = _page_number(request.args.get("page"), last)
    entries = s.pages.page(flt, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return render_template("dead_letters.html", entries=entries, total=total, page=page,
                           last=last, args=args, reasons=reasons.ALL, steps=STEPS,
                           filtered=any(args.values()))


@bp.route("/entry/<path:entry_id>")
def detail(entry_id: str) -> Any:
    s = services()
    entry = s.dead_letters.get(entry_id[:MAX_ID_CHARS])
    if entry is None:
        abort(404, f"no dead-letter entry {entry_id[:MAX_ID_CHARS]}")
    customer_id = entry.get("customer_id")
    history = s.history.recent(str(customer_id)) if customer_id else []
    subject = entry.get("transaction_id") if entry["step"] == "transaction" else customer_id
    waiting = s.scheduled.waiting(entry["step"], str(subject)) if subject else None
    return render_template("dead_letter.html", entry=entry, history=history, waiting=waiting)


def _selection(form: Any) -> tuple[str, str, list[str], dict[str, str]]:
    action = form.get("action", "")
    scope = form.get("scope", "")
    if action not in ("replay", "purge") or scope not in ("selected", "matching"):
        abort(400, "say replay or purge, of the selected entries or of all matching")
    ids = [i[:MAX_ID_CHARS] for i in form.getlist("ids") if i][:MAX_PER_ACTION]
    if scope == "selected" and not ids:
        abort(400, "no entries selected: tick some first")
    return action, scope, ids, _filter_args(form)


def _select(scope: str, ids: list[str], args: dict[str, str]) -> list[dict[str, Any]]:
    s = services()
    if scope == "selected":
        entries, _ = replay.select(s.dead_letters, ids=ids)
        return entries
    flt = _filter(args)
    if not (flt.reason or flt.step or flt.since):
        return s.dead_letters.list(limit=MAX_PER_ACTION)
    return s.dead_letters.list(reason=flt.reason, step=flt.step, since=flt.since,
                               limit=MAX_PER_ACTION)


@bp.route("/confirm", methods=["POST"])
def confirm() -> Any:
    refuse_if_read_only()
    s = services()
    action, scope, ids, args = _selection(request.form)
    if scope == "selected":
        found = [i for i in ids if s.dead_letters.get(i) is not None]
        count, total = len(found), len(found)
    else:
        found = []
        total = s.pages.count(_filter(args))
        count = min(total, MAX_PER_ACTION)
    return render_template("confirm.html", action=action, scope=scope, ids=found, args=args,
                           count=count, total=total)


@bp.route("/act", methods=["POST"])
def act() -> Any:
    refuse_if_read_only()
    s = services()
    action, scope, ids, args = _selection(request.form)
    entries = _select(scope, ids, args)
    touched = [e["id"] for e in entries]
    if action == "purge":
        done = replay.purge(s.dead_letters, entries)
        message = f"{done} purged" + (f", {len(entries) - done} kept (failed again since)"
                                      if done < len(entries) else "")
    else:
        report = replay.replay(s.dead_letters, entries, enqueue=s.enqueue_replay)
        message = report.summary
    audit(action, scope=scope, ids=",".join(touched) or "none")
    left = s.pages.count(_filter(args)) if scope == "matching" else 0
    if left:  # past this click's limit, or failed again already
        message += f"; {left} still match"
    flash(message)
    kept: dict[str, Any] = {k: v for k, v in args.items() if v}
    return redirect(url_for("dlq.index", **kept))
