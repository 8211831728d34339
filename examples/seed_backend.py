#!/usr/bin/env python3
"""A live-room business backend, written against the cloud IM server REST API.

This is the seed guide's backend as it would be written for Tencent Cloud IM; it
runs unchanged against OnAir by pointing IM_BASE_URL at the OnAir server.

Flow: import the anchor and a viewer, create an AVChatRoom, set its notice, send a
gift as the server (High priority, TIMCustomElem), mute the viewer and read the mute
list, ban the viewer and read the ban list, read the online count and the members.
Meanwhile a webhook receiver answers Group.CallbackBeforeSendMsg (reject messages
with a forbidden word, tag the others through CloudCustomData) and logs the
after-callbacks, verifying Sign = sha256(token + RequestTime) when CALLBACK_TOKEN is set.

Needs: pip install requests tls-sig-api-v2

Environment:
  IM_BASE_URL      https://console.tim.qq.com (OnAir: http://127.0.0.1:8080)
  IM_SDKAPPID      the app's SDKAppID
  IM_SECRET_KEY    the app's secret key
  IM_ADMIN         app admin account (default "administrator")
  CALLBACK_PORT    port of the webhook receiver (default 8081; 0 = no receiver)
  CALLBACK_BIND    address it listens on (default 0.0.0.0)
  CALLBACK_TOKEN   the callback token configured on the server (optional)
  FORBIDDEN_WORDS  comma-separated words rejected by the before-send callback
  ANCHOR, VIEWER   account ids (default anchor_1, viewer_1)
  GROUP_ID         the room id to create (default: let the server choose)

Options:
  --handshake            print "ROOM_READY <GroupId>" after creating the room and wait
                         for a line on stdin before going on; print "STEPS_DONE" after
                         the last step; during --wait-callbacks a line on stdin (or
                         EOF) ends the wait early.
  --wait-callbacks SECS  keep the webhook receiver up this long after the steps.

Exit status: 0 when every answer was the expected one, 1 otherwise (2: bad usage,
3: a dependency is missing).
"""

import argparse
import hashlib
import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

try:
    import requests
    import TLSSigAPIv2
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"missing dependency: {e}; run `pip install requests tls-sig-api-v2`", file=sys.stderr)
    sys.exit(3)

# ------------------------------------------------------------------ configuration

BASE_URL = os.environ.get("IM_BASE_URL", "https://console.tim.qq.com").rstrip("/")
SDKAPPID = int(os.environ.get("IM_SDKAPPID", "0"))
SECRET_KEY = os.environ.get("IM_SECRET_KEY", "")
ADMIN = os.environ.get("IM_ADMIN", "administrator")

CALLBACK_PORT = int(os.environ.get("CALLBACK_PORT", "8081"))
CALLBACK_BIND = os.environ.get("CALLBACK_BIND", "0.0.0.0")
CALLBACK_TOKEN = os.environ.get("CALLBACK_TOKEN", "")
FORBIDDEN_WORDS = [w for w in os.environ.get("FORBIDDEN_WORDS", "badword").split(",") if w]

ANCHOR = os.environ.get("ANCHOR", "anchor_1")
VIEWER = os.environ.get("VIEWER", "viewer_1")
GROUP_ID = os.environ.get("GROUP_ID", "")

GIFT = {
    "cmd": "gift_msg",
    "msg": {
        "type": 1,
        "giftUrl": "https://example.com/gifts/rocket.png",
        "giftName": "rocket",
        "giftCount": 1,
    },
}

# The admin UserSig, made with the official library (valid 180 days).
ADMIN_SIG = None


_LOG_LOCK = threading.Lock()


def log(*args):
    # The callback receiver answers on several threads: one line at a time.
    line = " ".join(str(a) for a in args) + "\n"
    with _LOG_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


class Unexpected(Exception):
    """An answer the backend did not expect."""


# ------------------------------------------------------------------ REST client


def call(service, command, body, expect_error=0):
    """POST /v4/{service}/{command}; returns the answer, raises Unexpected otherwise."""
    url = f"{BASE_URL}/v4/{service}/{command}"
    params = {
        "sdkappid": SDKAPPID,
        "identifier": ADMIN,
        "usersig": ADMIN_SIG,
        "random": random.randint(0, 4294967295),
        "contenttype": "json",
    }
    try:
        r = requests.post(url, params=params, json=body, timeout=10)
    except requests.RequestException as e:
        raise Unexpected(f"{service}/{command}: request failed: {e}") from e
    if r.status_code != 200:
        raise Unexpected(f"{service}/{command}: HTTP {r.status_code}: {r.text[:300]}")
    try:
        answer = r.json()
    except ValueError as e:
        raise Unexpected(f"{service}/{command}: answer is not JSON: {r.text[:300]}") from e
    code = answer.get("ErrorCode")
    status = answer.get("ActionStatus")
    ok = (status == "OK" and code == 0) if expect_error == 0 else (status == "FAIL" and code == expect_error)
    if not ok:
        raise Unexpected(
            f"{service}/{command}: expected ErrorCode {expect_error}, got {status} {code}: {answer.get('ErrorInfo')}"
        )
    return answer


def step(name, service, command, body):
    answer = call(service, command, body)
    extra = {k: v for k, v in answer.items() if k not in ("ActionStatus", "ErrorCode", "ErrorInfo")}
    log(f"STEP {name} OK {json.dumps(extra, ensure_ascii=False, sort_keys=True)}")
    return answer


# ------------------------------------------------------------------ webhook receiver

callback_log = []  # (command, body) in arrival order
callback_errors = []
callback_lock = threading.Lock()


def check_sign(query):
    """None when the request is authentic (or no token is set), else why not."""
    if not CALLBACK_TOKEN:
        return None
    sign = query.get("Sign", [""])[0]
    request_time = query.get("RequestTime", [""])[0]
    if not sign or not request_time:
        return "Sign/RequestTime missing"
    expected = hashlib.sha256((CALLBACK_TOKEN + request_time).encode()).hexdigest()
    if sign != expected:
        return f"bad Sign {sign} for RequestTime {request_time}"
    try:
        if abs(time.time() - int(request_time)) > 60:
            return f"RequestTime {request_time} is more than 60 s off"
    except ValueError:
        return f"bad RequestTime {request_time!r}"
    return None


def texts(msg_body):
    for elem in msg_body or []:
        if elem.get("MsgType") == "TIMTextElem":
            yield (elem.get("MsgContent") or {}).get("Text", "")


def tag(cloud_custom_data):
    """The CloudCustomData of an approved message: the original, plus our tag."""
    try:
        data = json.loads(cloud_custom_data) if cloud_custom_data else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {"original": cloud_custom_data}
    data["moderation"] = "passed"
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def before_send_msg(body):
    for text in texts(body.get("MsgBody")):
        for word in FORBIDDEN_WORDS:
            if word in text:
                return {"ActionStatus": "OK", "ErrorCode": 1, "ErrorInfo": f"forbidden word '{word}'"}
    return {
        "ActionStatus": "OK",
        "ErrorCode": 0,
        "ErrorInfo": "",
        "CloudCustomData": tag(body.get("CloudCustomData", "")),
    }


class CallbackHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        query = parse_qs(urlparse(self.path).query)
        command = query.get("CallbackCommand", [""])[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        problem = check_sign(query)
        if problem:
            with callback_lock:
                callback_errors.append(f"{command}: {problem}")
            log(f"CALLBACK {command} REFUSED {problem}")
            self.answer(403, {"ActionStatus": "FAIL", "ErrorCode": 1, "ErrorInfo": problem})
            return
        with callback_lock:
            callback_log.append((command, body))
        if command == "Group.CallbackBeforeSendMsg":
            reply = before_send_msg(body)
            verdict = "REJECT" if reply["ErrorCode"] == 1 else "ALLOW"
            log(f"CALLBACK {command} {verdict} from={body.get('From_Account')} texts={list(texts(body.get('MsgBody')))}")
        else:
            reply = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
            summary = {k: body[k] for k in ("GroupId", "From_Account", "MsgSeq", "CloudCustomData", "ErrorCode", "EventType") if k in body}
            log(f"CALLBACK {command} {json.dumps(summary, ensure_ascii=False, sort_keys=True)}")
        self.answer(200, reply)

    def answer(self, status, reply):
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def start_receiver():
    server = ThreadingHTTPServer((CALLBACK_BIND, CALLBACK_PORT), CallbackHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"CALLBACK_RECEIVER http://{CALLBACK_BIND}:{server.server_address[1]}/")
    return server


# ------------------------------------------------------------------ the flow


def run(handshake):
    # 1. accounts
    step("account_import_anchor", "im_open_login_svc", "account_import",
         {"UserID": ANCHOR, "Nick": "Anchor", "FaceUrl": "https://example.com/a.png"})
    step("account_import_viewer", "im_open_login_svc", "account_import", {"UserID": VIEWER, "Nick": "Viewer"})

    # 2. the live room
    create = {"Owner_Account": ANCHOR, "Type": "AVChatRoom", "Name": "Seed live room"}
    if GROUP_ID:
        create["GroupId"] = GROUP_ID
    group_id = step("create_group", "group_open_http_svc", "create_group", create).get("GroupId")
    if not group_id:
        raise Unexpected("create_group: no GroupId in the answer")
    log(f"ROOM_READY {group_id}")
    if handshake:
        if not sys.stdin.readline():
            raise Unexpected("stdin closed before the go-ahead")

    # 3. the notice
    step("modify_group_base_info", "group_open_http_svc", "modify_group_base_info",
         {"GroupId": group_id, "Notification": "Welcome! Be nice in the chat."})

    # 4. a gift, sent by the server
    gift = step("send_group_msg_gift", "group_open_http_svc", "send_group_msg", {
        "GroupId": group_id,
        "Random": random.randint(0, 4294967295),
        "MsgPriority": "High",
        "MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": json.dumps(GIFT), "Desc": "gift"}}],
    })
    if not gift.get("MsgSeq") or gift.get("MsgDropReason"):
        raise Unexpected(f"send_group_msg: gift not delivered: {gift}")

    # 5. mute the viewer for 60 s and read the mute list
    step("forbid_send_msg", "group_open_http_svc", "forbid_send_msg",
         {"GroupId": group_id, "Members_Account": [VIEWER], "MuteTime": 60})
    muted = step("get_group_muted_account", "group_open_http_svc", "get_group_muted_account", {"GroupId": group_id})
    entry = [m for m in muted.get("MutedAccountList", []) if m.get("Member_Account") == VIEWER]
    if not entry or not (time.time() + 30 < entry[0].get("MutedUntil", 0) <= time.time() + 90):
        raise Unexpected(f"get_group_muted_account: {VIEWER} should be muted for about 60 s: {muted}")

    # 6. ban the viewer and read the ban list
    step("ban_group_member", "group_open_http_svc", "ban_group_member",
         {"GroupId": group_id, "Members_Account": [VIEWER], "Duration": 3600, "Description": "spam"})
    bans = step("get_group_ban_member", "group_open_http_svc", "get_group_ban_member",
                {"GroupId": group_id, "Offset": 0, "Limit": 20})
    if VIEWER not in [b.get("Member_Account") for b in bans.get("BannedAccountList", [])]:
        raise Unexpected(f"get_group_ban_member: {VIEWER} is not listed: {bans}")

    # 7. who is there
    online = step("get_online_member_num", "group_open_http_svc", "get_online_member_num", {"GroupId": group_id})
    if not isinstance(online.get("OnlineMemberNum"), int):
        raise Unexpected(f"get_online_member_num: no OnlineMemberNum: {online}")
    members = step("get_members", "group_open_avchatroom_http_svc", "get_members",
                   {"GroupId": group_id, "Timestamp": 0})
    accounts = [m.get("Member_Account") for m in members.get("MemberList", [])]
    if VIEWER in accounts:
        raise Unexpected(f"get_members: the banned {VIEWER} is still listed: {accounts}")
    log("STEPS_DONE")
    return group_id


def wait_for_callbacks(seconds, handshake):
    log(f"WAITING_CALLBACKS {seconds}")
    if handshake:
        done = threading.Event()

        def read_stdin():
            sys.stdin.readline()
            done.set()

        threading.Thread(target=read_stdin, daemon=True).start()
        done.wait(seconds)
    else:
        time.sleep(seconds)


def main():
    global ADMIN_SIG
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handshake", action="store_true")
    parser.add_argument("--wait-callbacks", type=float, default=0, metavar="SECONDS")
    args = parser.parse_args()
    if not SDKAPPID or not SECRET_KEY:
        print("set IM_SDKAPPID and IM_SECRET_KEY", file=sys.stderr)
        return 2

    ADMIN_SIG = TLSSigAPIv2.TLSSigAPIv2(SDKAPPID, SECRET_KEY).gen_sig(ADMIN)
    receiver = start_receiver() if CALLBACK_PORT else None
    status = 0
    try:
        run(args.handshake)
        if args.wait_callbacks > 0:
            wait_for_callbacks(args.wait_callbacks, args.handshake)
    except Unexpected as e:
        log(f"FAILED {e}")
        status = 1
    if receiver:
        time.sleep(0.5)  # let late after-callbacks land before the summary
        receiver.shutdown()
        with callback_lock:
            counts = {}
            for command, _ in callback_log:
                counts[command] = counts.get(command, 0) + 1
            errors = list(callback_errors)
        log(f"CALLBACKS {json.dumps(counts, sort_keys=True)}")
        for e in errors:
            log(f"FAILED callback {e}")
        if errors:
            status = 1
    log("EXIT", status)
    return status


if __name__ == "__main__":
    sys.exit(main())
