"""Customer (or transaction): link, dead letters, waiting retries, history; sync now; preview."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from producers.console import preview as previewing
from producers.console.auth import audit, refuse_if_read_only, services
from producers.customer_status import customer_status, transaction_status

bp = Blueprint("customer", __name__, url_prefix="/customer")
KLAVIYO_PROFILE_URL = "https://www.klaviyo.com/profile/{}"
# iPaaS.com ids are numbers or short tokens; anything else is a typo, not a lookup.
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def _checked(raw: str | None) -> str:
    text = (raw or "").strip()
    if not _ID.match(text):
        abort(400, "an id is 1-100 letters, digits or _ . : -")
    return text


@bp.route("")
def search() -> Any:
    s = services()
    raw = request.args.get("id", "").strip()
    kind = "transaction" if request.args.get("kind") == "transaction" else "customer"
    if not raw:
        return render_template("customer.html", status=None, kind=kind, query="")
    record_id = _checked(raw)
    if kind == "transaction":
        status = transaction_status(record_id, s.dead_letters, s.history, s.scheduled)
        return render_template("customer.html", status=status, kind=kind, query=record_id)
    status = customer_status(record_id, s.links, s.dead_letters, s.history, s.scheduled,
                             s.tombstones)
    link = (KLAVIYO_PROFILE_URL.format(status["profile_id"]) if status["profile_id"]
            else None)
    return render_template("customer.html", status=status, kind=kind, query=record_id,
                           klaviyo_url=link)


@bp.route("/<customer_id>/sync", methods=["POST"])
def sync_now(customer_id: str) -> Any:
    refuse_if_read_only()
    cid = _checked(customer_id)
    task_id = services().enqueue_sync(cid)
    audit("sync", customer=cid, task=task_id)
    flash(f"customer {cid} queued for a sync (task {task_id})")
    return redirect(url_for("customer.search", id=cid))


@bp.route("/<customer_id>/preview")
def preview(customer_id: str) -> Any:
    cid = _checked(customer_id)
    try:
        report, live = services().preview(cid)
    except Exception as exc:  # iPaaS.com or Klaviyo unreachable, credentials missing
        abort(502, f"the preview could not be made: {type(exc).__name__}")
    audit("preview", customer=cid)
    return render_template("preview.html", customer_id=cid, report=report, live=live,
                           rows=previewing.compare(report, live),
                           others=previewing.other_writes(report),
                           klaviyo_url=KLAVIYO_PROFILE_URL.format(live["id"]) if live
                           else None)
