#!/usr/bin/env python3
"""A live-room backend built on a third-party SDK for the cloud's IM REST API.

It uses `tencentcloud-sdk-python-im` (PyPI, by Pinclr; module `tencentcloud_im`,
class `TCIMClient`) exactly as a backend written for Tencent Cloud IM would, changing
only the SDK's base URL. Nobody here wrote that SDK, so its request shapes — its
defaults included, such as `"GroupType": ""` in `get_group` and `ShutUpAllMember` /
`ShutUpTime` in its mute calls — check OnAir's compatibility claim.

Flow: import the anchor and a viewer, create an AVChatRoom, list the app's groups
with the SDK's default "all types", read the group (LastInfoTime, ShutUpAllMember),
change its profile and see LastInfoTime move, set an attribute, send a message as
the anchor and recall it, recall an unknown seq (RetCode 10030), a targeted message
(refused for AVChatRoom), a member-role query (not supported for AVChatRoom), mute the
viewer, read the online count, and destroy the room.

Needs: pip install tencentcloud-sdk-python-im   (it brings tls-sig-api-v2 and requests)

Environment:
  IM_BASE_URL      https://console.tim.qq.com (OnAir: http://127.0.0.1:8080)
  IM_SDKAPPID      the app's SDKAppID
  IM_SECRET_KEY    the app's secret key
  IM_ADMIN         app admin account (default "administrator")
  ANCHOR, VIEWER   account ids (default anchor_1, viewer_1)
  GROUP_ID         the room id to create (default sdk_room)

Prints one line per step (`OK <step> …` or `FAIL <step> …`) and "DONE" at the end.
Exit status: 0 when every answer was the expected one, 1 otherwise, 3 when the SDK is
missing.
"""

import json
import os
import sys
import time

try:
    from tencentcloud_im.tcim_client import GroupAttr, GroupObj, MessageText, TCIMClient
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"missing dependency: {e}; run `pip install tencentcloud-sdk-python-im`", file=sys.stderr)
    sys.exit(3)

BASE_URL = os.environ.get("IM_BASE_URL", "https://console.tim.qq.com").rstrip("/")
SDKAPPID = int(os.environ.get("IM_SDKAPPID", "0"))
SECRET_KEY = os.environ.get("IM_SECRET_KEY", "")
ADMIN = os.environ.get("IM_ADMIN", "administrator")
ANCHOR = os.environ.get("ANCHOR", "anchor_1")
VIEWER = os.environ.get("VIEWER", "viewer_1")
GROUP_ID = os.environ.get("GROUP_ID", "sdk_room")

failures = []


def answer(step, response):
    """The JSON envelope of an SDK call (the SDK returns a `requests` response, or
    None when it could not send)."""
    if response is None:
        raise RuntimeError(f"{step}: the SDK sent nothing")
    if response.status_code != 200:
        raise RuntimeError(f"{step}: HTTP {response.status_code}")
    return response.json()


def check(step, response, expect_code=0, test=None):
    """Checks an answer's ErrorCode (and an optional predicate on the envelope)."""
    try:
        v = answer(step, response)
        ok = v.get("ErrorCode") == expect_code and (test is None or test(v))
    except (RuntimeError, ValueError) as e:
        v, ok = {"error": str(e)}, False
    print(f"{'OK' if ok else 'FAIL'} {step} {json.dumps(v, ensure_ascii=False)}", flush=True)
    if not ok:
        failures.append(step)
    return v


def main():
    if not SDKAPPID or not SECRET_KEY:
        print("set IM_SDKAPPID and IM_SECRET_KEY", file=sys.stderr)
        return 2
    im = TCIMClient(SDKAPPID, SECRET_KEY, ADMIN, tencent_url=f"{BASE_URL}/v4")

    check("add_anchor", im.add_single_user(ANCHOR, "The Anchor", "http://example.com/a.png"))
    check("add_viewer", im.add_single_user(VIEWER, "Viewer", ""))

    # The SDK sends MaxMemberCount (meaningless for AVChatRoom) and no MemberList.
    group = GroupObj(ANCHOR, "AVChatRoom", "SDK live room", notification="hello", group_id=GROUP_ID)
    check("create_group", im.create_group(group), test=lambda v: v.get("GroupId") == GROUP_ID)

    # get_group's default GroupType is "" (all types).
    check(
        "get_group_all_types",
        im.get_group(),
        test=lambda v: GROUP_ID in [g["GroupId"] for g in v.get("GroupIdList", [])],
    )

    info = check(
        "get_group_detail",
        im.get_group_detail([GROUP_ID]),
        test=lambda v: v["GroupInfo"][0].get("ShutUpAllMember") == "Off"
        and v["GroupInfo"][0]["LastInfoTime"] == v["GroupInfo"][0]["CreateTime"],
    )
    created = info.get("GroupInfo", [{}])[0].get("CreateTime", 0)
    time.sleep(1.1)  # LastInfoTime is in seconds
    check("update_group_baseinfo", im.update_group_baseinfo(GROUP_ID, group_name="Renamed", shutUpFlag="On"))
    check(
        "get_group_detail_after_change",
        im.get_group_detail([GROUP_ID]),
        test=lambda v: v["GroupInfo"][0]["Name"] == "Renamed"
        and v["GroupInfo"][0]["ShutUpAllMember"] == "On"
        and v["GroupInfo"][0]["LastInfoTime"] > created,
    )
    check("update_group_baseinfo_unmute", im.update_group_baseinfo(GROUP_ID, shutUpFlag="Off"))

    check("update_group_attr", im.update_group_attr(GROUP_ID, [GroupAttr("seat1", ANCHOR)]))
    check(
        "get_group_attr",
        im.get_group_attr(GROUP_ID),
        test=lambda v: {"key": "seat1", "value": ANCHOR} in v.get("GroupAttrAry", []),
    )

    sent = check(
        "send_group_message",
        im.send_group_message(GROUP_ID, [MessageText("welcome")], from_account=ANCHOR, msgPriority="High"),
        test=lambda v: v.get("MsgSeq", 0) > 0,
    )
    seq = sent.get("MsgSeq", 0)
    check(
        "recall_group_message",
        im.recall_group_message(GROUP_ID, [seq]),
        test=lambda v: v.get("RecallRetList") == [{"MsgSeq": seq, "RetCode": 0}],
    )
    check(
        "recall_unknown_seq",
        im.recall_group_message(GROUP_ID, [seq + 1000]),
        test=lambda v: v.get("RecallRetList") == [{"MsgSeq": seq + 1000, "RetCode": 10030}],
    )

    # What the cloud refuses for an AVChatRoom.
    check(
        "send_group_message_targeted",
        im.send_group_message(GROUP_ID, [MessageText("psst")], to_accounts=[VIEWER]),
        expect_code=10004,
    )
    check("get_mem_role_in_group", im.get_mem_role_in_group(GROUP_ID, [VIEWER]), expect_code=10004)

    check("forbid_send_msg", im.forbid_send_msg(GROUP_ID, [VIEWER], 60))
    check(
        "get_group_shutup_list",
        im.get_group_shutup_list(GROUP_ID),
        test=lambda v: VIEWER in [m["Member_Account"] for m in v.get("ShuttedUinList", v.get("MutedAccountList", []))],
    )
    check("get_online_member_num", im.get_online_member_num(GROUP_ID), test=lambda v: "OnlineMemberNum" in v)

    check("delete_group", im.delete_group(GROUP_ID))
    check("get_group_detail_gone", im.get_group_detail([GROUP_ID]), test=lambda v: v["GroupInfo"][0]["ErrorCode"] == 10010)

    print("DONE", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
