//! The cloud-compatible REST face: `/v4/{service}/{command}`.
//!
//! A business backend written for the cloud's IM server API works against OnAir by
//! changing only its base URL: same query (`sdkappid`, `identifier`, `usersig`,
//! `random`, `contenttype`), same JSON field names, same envelope
//! (`ActionStatus`/`ErrorCode`/`ErrorInfo`, always HTTP 200) and the same error
//! numbers (docs/cloud-compat.md, "REST API envelope" and "Error codes"). Every handler parses its body into a typed
//! request, so a wrong type or a missing field is a 10004 with serde's explanation —
//! never a panic.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};
use onair_core::Rejection;
use onair_core::message::{MAX_MESSAGE_BYTES, MsgElem, Outgoing, Priority, SenderProfile};
use onair_core::room::{AttrWrite, ProfilePatch};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::http::extract::ClientIp;
use crate::state::Shared;
use onair_core::Code;
use onair_core::message::check_profile_field;
use onair_hub::callbacks::Origin;
use onair_hub::{NewRoom, SendCtx};

/// Largest request body accepted (93000, the cloud's "JSON packet too long", beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The `ErrorInfo` of a body that is not JSON, verbatim from the cloud.
const JSON_PARSE_INFO: &str = "Fail to Parse json data of body, Please check it";

/// A failed call: the cloud's number and a sentence for the developer.
#[derive(Debug)]
struct Fail {
    code: u32,
    info: String,
}

impl Fail {
    fn new(code: u32, info: impl Into<String>) -> Self {
        Fail { code, info: info.into() }
    }

    fn param(info: impl Into<String>) -> Self {
        Fail::new(10004, info)
    }
}

impl From<Rejection> for Fail {
    fn from(r: Rejection) -> Self {
        Fail { code: r.code.number(), info: r.info }
    }
}

/// Response fields beyond the envelope.
type Fields = Map<String, Value>;
type V4 = Result<Fields, Fail>;

fn fields(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn envelope(result: V4) -> Response {
    let mut out = Map::new();
    match result {
        Ok(extra) => {
            out.insert("ActionStatus".into(), json!("OK"));
            out.insert("ErrorCode".into(), json!(0));
            out.insert("ErrorInfo".into(), json!(""));
            out.extend(extra);
        }
        Err(fail) => {
            out.insert("ActionStatus".into(), json!("FAIL"));
            out.insert("ErrorCode".into(), json!(fail.code));
            out.insert("ErrorInfo".into(), json!(fail.info));
        }
    }
    Json(Value::Object(out)).into_response()
}

/// The `/v4/{service}/{command}` handler: authenticates the app admin, reads the
/// JSON body and runs the command. Always HTTP 200.
pub async fn dispatch(State(state): State<Shared>, ip: ClientIp, req: Request) -> Response {
    envelope(handle(&state, ip.origin(), req).await)
}

/// Who made a call: the app admin (`Operator_Account` in callbacks) and where the
/// request came from (the callbacks' `ClientIP`, `OptPlatform=RESTAPI`).
struct Caller {
    admin: String,
    origin: Origin,
}

async fn handle(state: &Shared, origin: Origin, req: Request) -> V4 {
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (Some("v4"), Some(service), Some(command)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Fail::new(
            60002,
            format!("cannot parse the URL path '{path}'; expected /v4/{{service}}/{{command}}"),
        ));
    };
    let (service, command) = (service.to_owned(), command.to_owned());
    let admin = authenticate(state, &req)?;
    let body = read_body(req).await?;
    let body = match body {
        Some(body) => body,
        // Every field of the group list is optional, and one SDK calls it with a
        // bodiless GET: no body means "no fields" there. Elsewhere required fields
        // exist, and an empty body stays the cloud's parse failure.
        None if (service.as_str(), command.as_str()) == ("group_open_http_svc", "get_appid_group_list") => Map::new(),
        None => return Err(Fail::new(90001, JSON_PARSE_INFO)),
    };
    run(state, &Caller { admin, origin }, &service, &command, body).await
}

#[derive(Deserialize)]
struct AuthQuery {
    sdkappid: Option<String>,
    identifier: Option<String>,
    usersig: Option<String>,
}

fn authenticate(state: &Shared, req: &Request) -> Result<String, Fail> {
    let q: AuthQuery = Query::<AuthQuery>::try_from_uri(req.uri())
        .map(|q| q.0)
        .map_err(|e| Fail::new(60002, format!("cannot parse the URL query: {e}")))?;
    let Some(sdkappid) = q.sdkappid.filter(|s| !s.is_empty()) else {
        return Err(Fail::new(60012, "the URL is missing the sdkappid parameter"));
    };
    let sdkappid = match sdkappid.parse::<u64>() {
        Ok(n) if n == state.app.sdkappid => n,
        _ => return Err(Fail::new(60006, format!("invalid SDKAppID '{sdkappid}': this server hosts another app"))),
    };
    let Some(identifier) = q.identifier.filter(|s| !s.is_empty()) else {
        return Err(Fail::new(60004, "the URL is missing the identifier parameter (an app admin account)"));
    };
    let Some(usersig) = q.usersig.filter(|s| !s.is_empty()) else {
        return Err(Fail::new(60004, "the URL is missing the usersig parameter (UserSig is empty)"));
    };
    state
        .app
        .verify(sdkappid, &identifier, &usersig)
        .map_err(|r| Fail::new(60004, format!("identifier or usersig invalid: {} ({})", r.info, r.code.number())))?;
    if !state.app.admins.contains(&identifier) {
        return Err(Fail::new(60010, format!("identifier '{identifier}' is not an app admin")));
    }
    Ok(identifier)
}

/// The JSON object of the body; `None` when the body is empty (whitespace only).
async fn read_body(req: Request) -> Result<Option<Map<String, Value>>, Fail> {
    let too_long = || Fail::new(Code::PacketTooLong.number(), format!("request body exceeds {MAX_BODY_BYTES} bytes"));
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_long());
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await.map_err(|_| too_long())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match crate::http::extract::parse_json(&bytes) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        _ => Err(Fail::new(90001, JSON_PARSE_INFO)),
    }
}

/// Deserializes the body into a command's request; failures are 10004.
fn parse<T: DeserializeOwned>(body: Map<String, Value>) -> Result<T, Fail> {
    serde_json::from_value(Value::Object(body)).map_err(|e| Fail::param(format!("invalid request body: {e}")))
}

async fn run(state: &Shared, caller: &Caller, service: &str, command: &str, body: Map<String, Value>) -> V4 {
    // In a cluster a group created on another node a moment ago may not be loaded
    // here yet: look the named groups up in the shared store first, so no command
    // answers 10010 for a group that exists (the handlers then find it in memory).
    let named =
        body.get("GroupId").into_iter().chain(body.get("GroupIdList").and_then(Value::as_array).into_iter().flatten());
    for id in named.filter_map(Value::as_str).take(50) {
        let _ = state.hub.find(id).await; // "does not exist" is the handler's answer to give
    }
    let admin = caller.admin.as_str();
    match (service, command) {
        ("im_open_login_svc", "account_import") => account_import(state, parse(body)?).await,
        ("im_open_login_svc", "multiaccount_import") => multiaccount_import(state, parse(body)?).await,
        ("im_open_login_svc", "kick") => kick(state, parse(body)?),
        ("openim", "query_online_status") => query_online_status(state, parse(body)?).await,
        ("profile", "portrait_set") => portrait_set(state, parse(body)?).await,
        ("profile", "portrait_get") => portrait_get(state, parse(body)?).await,
        ("group_open_http_svc", "create_group") => create_group(state, parse(body)?).await,
        ("group_open_http_svc", "destroy_group") => destroy_group(state, caller, parse(body)?).await,
        ("group_open_http_svc", "get_group_info") => get_group_info(state, parse(body)?).await,
        ("group_open_http_svc", "modify_group_base_info") => modify_group_base_info(state, caller, parse(body)?).await,
        ("group_open_http_svc", "get_appid_group_list") => get_appid_group_list(state, parse(body)?),
        ("group_open_attr_http_svc" | "group_open_http_svc", "get_group_attr") => get_group_attr(state, parse(body)?),
        ("group_open_http_svc" | "group_open_attr_http_svc", "modify_group_attr") => {
            write_attrs(state, caller, AttrWrite::Modify, parse(body)?).await
        }
        ("group_open_http_svc" | "group_open_attr_http_svc", "set_group_attr") => {
            write_attrs(state, caller, AttrWrite::Set, parse(body)?).await
        }
        ("group_open_http_svc" | "group_open_attr_http_svc", "delete_group_attr") => {
            write_attrs(state, caller, AttrWrite::Delete, parse(body)?).await
        }
        ("group_open_http_svc" | "group_open_attr_http_svc", "clear_group_attr") => {
            write_attrs(state, caller, AttrWrite::Clear, parse(body)?).await
        }
        ("group_open_http_svc", "send_group_msg") => send_group_msg(state, caller, parse(body)?).await,
        ("group_open_http_svc", "send_group_system_notification") => {
            send_group_system_notification(state, parse(body)?)
        }
        ("group_open_http_svc", "send_broadcast_msg") => send_broadcast_msg(state, admin, parse(body)?),
        ("group_open_http_svc", "group_msg_get_simple") => group_msg_get_simple(state, parse(body)?).await,
        ("group_open_http_svc", "get_online_member_num") => get_online_member_num(state, parse(body)?),
        ("group_open_avchatroom_http_svc", "get_members") => get_members(state, parse(body)?),
        ("group_open_avchatroom_http_svc", "check_members") => check_members(state, parse(body)?),
        ("group_open_avchatroom_http_svc", "modify_user_info") => modify_user_info(state, parse(body)?),
        ("group_open_http_svc", "group_msg_recall") => group_msg_recall(state, admin, parse(body)?).await,
        ("group_open_avchatroom_http_svc", "modify_admin") => modify_admin(state, parse(body)?).await,
        ("group_open_avchatroom_http_svc", "get_admin_list") => get_admin_list(state, parse(body)?),
        ("group_open_http_svc", "forbid_send_msg") => forbid_send_msg(state, parse(body)?).await,
        ("group_open_http_svc", "get_group_muted_account") => muted_accounts(state, parse(body)?, false),
        ("group_open_http_svc", "get_group_shutted_uin") => muted_accounts(state, parse(body)?, true),
        ("group_open_http_svc", "ban_group_member") => ban_group_member(state, caller, parse(body)?).await,
        ("group_open_http_svc", "unban_group_member") => unban_group_member(state, parse(body)?).await,
        ("group_open_http_svc", "get_group_ban_member") => get_group_ban_member(state, parse(body)?),
        _ => Err(match av_unsupported(service, command) {
            Some(code) => Fail::new(
                code,
                format!(
                    "'{command}' is not supported for this group type: AVChatRoom members join and leave from clients"
                ),
            ),
            None => Fail::new(10003, format!("unknown command '{service}/{command}'")),
        }),
    }
}

/// The code the cloud answers for a member command an AVChatRoom does not support
/// (docs/cloud-compat.md, "AV-unsupported and not implemented"): 10007 where the
/// cloud documents adding or modifying members of an AV group as a permission error,
/// 10004 (invalid parameter) for the others, as it documents for
/// `delete_group_member`.
fn av_unsupported(service: &str, command: &str) -> Option<u32> {
    match (service, command) {
        ("group_open_http_svc", "add_group_member" | "modify_group_member_info") => Some(10007),
        ("group_open_http_svc", "delete_group_member" | "get_group_member_info" | "get_role_in_group") => Some(10004),
        _ => None,
    }
}

// ---------------------------------------------------------------- helpers

fn storage(e: impl std::fmt::Display) -> Fail {
    tracing::error!(error = %e, "storage failure in /v4");
    Fail::new(10002, "internal storage error; retry later")
}

fn check_user_id(field: &str, id: &str) -> Result<(), Fail> {
    if id.is_empty() || id.len() > 32 {
        return Err(Fail::param(format!("{field} must be 1-32 bytes, got {} bytes", id.len())));
    }
    Ok(())
}

async fn load_user(state: &Shared, user_id: &str) -> Result<Option<onair_store::UserRecord>, Fail> {
    state.store.get_user(user_id).await.map_err(storage)
}

/// Stores a user and restamps the profile of their connected sessions.
async fn save_user(state: &Shared, record: &onair_store::UserRecord) -> Result<(), Fail> {
    state.store.upsert_user(record).await.map_err(storage)?;
    let profile = SenderProfile::from(record);
    state.sessions.update_profile(&record.user_id, &profile);
    Ok(())
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: String,
}

fn kv_map(list: Vec<KeyValue>) -> BTreeMap<String, String> {
    list.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn kv_list(map: &BTreeMap<String, String>, only: Option<&[String]>) -> Vec<Value> {
    map.iter()
        .filter(|(k, _)| only.is_none_or(|keys| keys.contains(k)))
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect()
}

fn on_off(field: &str, v: Option<&str>) -> Result<Option<bool>, Fail> {
    match v {
        None => Ok(None),
        Some("On") => Ok(Some(true)),
        Some("Off") => Ok(Some(false)),
        Some(other) => Err(Fail::param(format!("{field} must be \"On\" or \"Off\", got {other:?}"))),
    }
}

// ---------------------------------------------------------------- accounts

#[derive(Deserialize)]
struct AccountImport {
    #[serde(rename = "UserID", alias = "Identifier")]
    user_id: String,
    #[serde(rename = "Nick")]
    nick: Option<String>,
    #[serde(rename = "FaceUrl")]
    face_url: Option<String>,
}

async fn account_import(state: &Shared, req: AccountImport) -> V4 {
    check_user_id("UserID", &req.user_id)?;
    let mut record = load_user(state, &req.user_id)
        .await?
        .unwrap_or_else(|| onair_store::UserRecord { user_id: req.user_id.clone(), ..Default::default() });
    if let Some(nick) = req.nick {
        check_profile_field("Nick", &nick, 64)?;
        record.nick = nick;
    }
    if let Some(face) = req.face_url {
        check_profile_field("FaceUrl", &face, 500)?;
        record.avatar = face;
    }
    save_user(state, &record).await?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
struct MultiAccountImport {
    #[serde(rename = "Accounts")]
    accounts: Vec<String>,
}

async fn multiaccount_import(state: &Shared, req: MultiAccountImport) -> V4 {
    if req.accounts.len() > 100 {
        return Err(Fail::param(format!("Accounts has {} entries; at most 100 per call", req.accounts.len())));
    }
    let mut failed = Vec::new();
    for id in req.accounts {
        if id.is_empty() || id.len() > 32 {
            failed.push(id);
            continue;
        }
        match state.store.get_user(&id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let record = onair_store::UserRecord { user_id: id.clone(), ..Default::default() };
                if let Err(e) = state.store.upsert_user(&record).await {
                    tracing::error!(error = %e, "account import failed");
                    failed.push(id);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                failed.push(id);
            }
        }
    }
    Ok(fields(json!({ "FailAccounts": failed })))
}

#[derive(Deserialize)]
struct Kick {
    #[serde(rename = "UserID", alias = "Identifier")]
    user_id: String,
}

fn kick(state: &Shared, req: Kick) -> V4 {
    check_user_id("UserID", &req.user_id)?;
    state.sessions.kick_user(&req.user_id, "KICKED_BY_ADMIN", "an admin ended your login");
    Ok(Fields::new())
}

#[derive(Deserialize)]
struct QueryOnline {
    #[serde(rename = "To_Account")]
    to_account: Vec<String>,
    #[serde(rename = "IsNeedDetail", default)]
    is_need_detail: u8,
}

async fn query_online_status(state: &Shared, req: QueryOnline) -> V4 {
    if req.to_account.len() > 500 {
        return Err(Fail::param(format!("To_Account has {} entries; at most 500 per call", req.to_account.len())));
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for id in req.to_account {
        let platforms = state.sessions.platforms(&id);
        if platforms.is_empty() && load_user(state, &id).await?.is_none() {
            errors.push(json!({"To_Account": id, "ErrorCode": 70107}));
            continue;
        }
        let mut item = json!({
            "To_Account": id,
            "State": if platforms.is_empty() { "Offline" } else { "Online" },
        });
        if req.is_need_detail == 1 {
            item["Detail"] =
                platforms.iter().map(|p| json!({"Platform": p, "Status": "Online"})).collect::<Vec<_>>().into();
        }
        results.push(item);
    }
    let mut out = fields(json!({ "QueryResult": results }));
    if !errors.is_empty() {
        out.insert("ErrorList".into(), errors.into());
    }
    Ok(out)
}

// ---------------------------------------------------------------- profiles

const TAG_NICK: &str = "Tag_Profile_IM_Nick";
const TAG_IMAGE: &str = "Tag_Profile_IM_Image";

#[derive(Deserialize)]
struct ProfileItem {
    #[serde(rename = "Tag")]
    tag: String,
    #[serde(rename = "Value")]
    value: Value,
}

#[derive(Deserialize)]
struct PortraitSet {
    #[serde(rename = "From_Account")]
    from_account: String,
    #[serde(rename = "ProfileItem")]
    profile_item: Vec<ProfileItem>,
}

async fn portrait_set(state: &Shared, req: PortraitSet) -> V4 {
    check_user_id("From_Account", &req.from_account)?;
    let mut record = load_user(state, &req.from_account)
        .await?
        .unwrap_or_else(|| onair_store::UserRecord { user_id: req.from_account.clone(), ..Default::default() });
    for item in req.profile_item {
        let Value::String(value) = item.value else {
            return Err(Fail::param(format!("ProfileItem {} needs a string Value", item.tag)));
        };
        match item.tag.as_str() {
            TAG_NICK => {
                check_profile_field(TAG_NICK, &value, 64)?;
                record.nick = value;
            }
            TAG_IMAGE => {
                check_profile_field(TAG_IMAGE, &value, 500)?;
                record.avatar = value;
            }
            other => {
                return Err(Fail::param(format!(
                    "profile tag '{other}' is not supported; OnAir keeps {TAG_NICK} and {TAG_IMAGE}"
                )));
            }
        }
    }
    save_user(state, &record).await?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
struct PortraitGet {
    #[serde(rename = "To_Account")]
    to_account: Vec<String>,
    #[serde(rename = "TagList")]
    tag_list: Vec<String>,
}

async fn portrait_get(state: &Shared, req: PortraitGet) -> V4 {
    if req.to_account.len() > 100 {
        return Err(Fail::param(format!("To_Account has {} entries; at most 100 per call", req.to_account.len())));
    }
    let mut items = Vec::new();
    let mut fail = Vec::new();
    for id in req.to_account {
        match load_user(state, &id).await? {
            Some(r) => {
                let profile: Vec<Value> = req
                    .tag_list
                    .iter()
                    .filter_map(|tag| match tag.as_str() {
                        TAG_NICK => Some(json!({"Tag": TAG_NICK, "Value": r.nick})),
                        TAG_IMAGE => Some(json!({"Tag": TAG_IMAGE, "Value": r.avatar})),
                        _ => None,
                    })
                    .collect();
                items.push(json!({"To_Account": id, "ProfileItem": profile, "ResultCode": 0, "ResultInfo": ""}));
            }
            None => {
                items.push(json!({"To_Account": id, "ProfileItem": [], "ResultCode": 70107,
                                  "ResultInfo": format!("account '{id}' does not exist")}));
                fail.push(id);
            }
        }
    }
    Ok(fields(json!({ "UserProfileItem": items, "FailAccount": fail })))
}

// ---------------------------------------------------------------- rooms

#[derive(Deserialize)]
struct CreateGroup {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "GroupId")]
    group_id: Option<String>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Owner_Account", default)]
    owner: String,
    #[serde(rename = "Introduction", default)]
    introduction: String,
    #[serde(rename = "Notification", default)]
    notification: String,
    #[serde(rename = "FaceUrl", default)]
    face_url: String,
    #[serde(rename = "AppDefinedData", default)]
    app_defined_data: Vec<KeyValue>,
    #[serde(rename = "MemberList", default)]
    member_list: Vec<Value>,
}

async fn create_group(state: &Shared, req: CreateGroup) -> V4 {
    if req.kind != "AVChatRoom" {
        return Err(Fail::param(format!(
            "group Type '{}' is not supported: OnAir hosts live rooms only (Type \"AVChatRoom\")",
            req.kind
        )));
    }
    if !req.member_list.is_empty() {
        return Err(Fail::new(10007, "an AVChatRoom cannot be created with a MemberList; members join from clients"));
    }
    let room = state
        .hub
        .create(NewRoom {
            room_id: req.group_id,
            name: req.name,
            owner: req.owner,
            introduction: req.introduction,
            notification: req.notification,
            face_url: req.face_url,
            app_defined_data: kv_map(req.app_defined_data),
            attrs: BTreeMap::new(),
        })
        .await?;
    Ok(fields(json!({ "GroupId": room.id })))
}

#[derive(Deserialize)]
struct GroupOnly {
    #[serde(rename = "GroupId")]
    group_id: String,
}

async fn destroy_group(state: &Shared, caller: &Caller, req: GroupOnly) -> V4 {
    state.hub.destroy_by(&req.group_id, &caller.admin, &caller.origin).await?;
    Ok(Fields::new())
}

#[derive(Deserialize, Default)]
struct ResponseFilter {
    #[serde(rename = "GroupBaseInfoFilter")]
    base: Option<Vec<String>>,
    #[serde(rename = "AppDefinedDataFilter_Group")]
    app_defined: Option<Vec<String>>,
    #[serde(rename = "MemberInfoFilter", default)]
    _member_info: Option<Vec<String>>,
    #[serde(rename = "AppDefinedDataFilter_GroupMember", default)]
    _member_app_defined: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct GetGroupInfo {
    #[serde(rename = "GroupIdList")]
    group_id_list: Vec<String>,
    #[serde(rename = "ResponseFilter")]
    response_filter: Option<ResponseFilter>,
}

async fn get_group_info(state: &Shared, req: GetGroupInfo) -> V4 {
    if req.group_id_list.len() > 50 {
        return Err(Fail::param(format!("GroupIdList has {} ids; at most 50 per call", req.group_id_list.len())));
    }
    let filter = req.response_filter.unwrap_or_default();
    let mut infos = Vec::new();
    for id in req.group_id_list {
        let room = match state.hub.get(&id) {
            Ok(room) => room,
            Err(r) => {
                infos.push(json!({"GroupId": id, "ErrorCode": r.code.number(), "ErrorInfo": r.info}));
                continue;
            }
        };
        let v = room.view();
        let last_msg_time =
            state.store.messages_before(&id, None, 1).await.map_err(storage)?.first().map_or(0, |m| m.time_secs());
        let base = json!({
            "Type": "AVChatRoom",
            "Name": v.name,
            "Appid": state.app.sdkappid,
            "Introduction": v.introduction,
            "Notification": v.notification,
            "FaceUrl": v.face_url,
            "Owner_Account": v.owner,
            "CreateTime": v.created_at,
            "InfoSeq": v.info_seq,
            "LastInfoTime": room.profile().last_info_time() / 1000,
            "LastMsgTime": last_msg_time,
            "NextMsgSeq": v.next_seq,
            "MemberNum": v.online,
            "MaxMemberNum": 0,
            "ApplyJoinOption": "FreeAccess",
            "MuteAllMember": if v.mute_all { "On" } else { "Off" },
            // The older name of the same switch, which older SDKs read.
            "ShutUpAllMember": if v.mute_all { "On" } else { "Off" },
        });
        let mut info = Map::new();
        info.insert("GroupId".into(), json!(v.room_id));
        for (k, val) in fields(base) {
            if filter.base.as_ref().is_none_or(|names| names.contains(&k)) {
                info.insert(k, val);
            }
        }
        let show_app_defined = filter.app_defined.is_some() || filter.base.is_none();
        if show_app_defined {
            info.insert("AppDefinedData".into(), kv_list(&v.app_defined_data, filter.app_defined.as_deref()).into());
        }
        info.insert("ErrorCode".into(), json!(0));
        info.insert("ErrorInfo".into(), json!(""));
        infos.push(Value::Object(info));
    }
    Ok(fields(json!({ "GroupInfo": infos })))
}

#[derive(Deserialize)]
struct ModifyGroup {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Introduction")]
    introduction: Option<String>,
    #[serde(rename = "Notification")]
    notification: Option<String>,
    #[serde(rename = "FaceUrl")]
    face_url: Option<String>,
    #[serde(rename = "MuteAllMember")]
    mute_all_member: Option<String>,
    #[serde(rename = "ShutUpAllMember")]
    shut_up_all_member: Option<String>,
    #[serde(rename = "AppDefinedData")]
    app_defined_data: Option<Vec<KeyValue>>,
}

async fn modify_group_base_info(state: &Shared, caller: &Caller, req: ModifyGroup) -> V4 {
    let mute = match (req.mute_all_member.as_deref(), req.shut_up_all_member.as_deref()) {
        (Some(m), _) => on_off("MuteAllMember", Some(m))?,
        (None, s) => on_off("ShutUpAllMember", s)?,
    };
    let patch = ProfilePatch {
        name: req.name,
        introduction: req.introduction,
        notification: req.notification,
        face_url: req.face_url,
        app_defined_data: req.app_defined_data.map(kv_map),
        mute_all: mute,
    };
    state.hub.modify_by(&req.group_id, patch, &caller.admin, &caller.origin).await?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
struct GroupList {
    #[serde(rename = "Limit")]
    limit: Option<u64>,
    #[serde(rename = "Next", default)]
    next: u64,
    #[serde(rename = "GroupType")]
    group_type: Option<String>,
}

fn get_appid_group_list(state: &Shared, req: GroupList) -> V4 {
    // An empty type is one SDK's default for "all types" (the cloud reads it so).
    let rooms = match req.group_type.as_deref() {
        None | Some("" | "AVChatRoom") => state.hub.list(),
        Some(_) => Vec::new(),
    };
    let limit = req.limit.unwrap_or(10_000).clamp(1, 10_000) as usize;
    let start = usize::try_from(req.next).unwrap_or(usize::MAX).min(rooms.len());
    let page: Vec<Value> = rooms.iter().skip(start).take(limit).map(|r| json!({"GroupId": r.id})).collect();
    let end = start + page.len();
    let next = if end < rooms.len() { end as u64 } else { 0 };
    Ok(fields(json!({"TotalCount": rooms.len(), "GroupIdList": page, "Next": next})))
}

// ---------------------------------------------------------------- attributes

#[derive(Deserialize)]
struct AttrItem {
    key: String,
    value: Option<String>,
}

#[derive(Deserialize)]
struct AttrWriteReq {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "GroupAttr", default)]
    group_attr: Vec<AttrItem>,
}

fn get_group_attr(state: &Shared, req: GroupOnly) -> V4 {
    let attrs = state.hub.get(&req.group_id)?.profile().attrs;
    let ary: Vec<Value> = attrs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    Ok(fields(json!({ "GroupAttrAry": ary })))
}

async fn write_attrs(state: &Shared, caller: &Caller, op: AttrWrite, req: AttrWriteReq) -> V4 {
    let mut given = BTreeMap::new();
    for item in req.group_attr {
        let value = match (op, item.value) {
            (AttrWrite::Modify | AttrWrite::Set, None) => {
                return Err(Fail::param(format!("GroupAttr '{}' needs a string value", item.key)));
            }
            (_, v) => v.unwrap_or_default(),
        };
        given.insert(item.key, value);
    }
    match op {
        AttrWrite::Modify | AttrWrite::Delete if given.is_empty() => {
            return Err(Fail::param("GroupAttr must list at least one attribute"));
        }
        AttrWrite::Clear => given.clear(),
        _ => {}
    }
    state.hub.write_attrs_by(&req.group_id, op, given, &caller.admin, &caller.origin).await?;
    Ok(Fields::new())
}

// ---------------------------------------------------------------- messages

fn parse_priority(p: Option<&str>) -> Result<Priority, Fail> {
    match p {
        None => Ok(Priority::Normal),
        Some(p) => Priority::parse(p).ok_or_else(|| {
            Fail::param(format!(
                "MsgPriority must be \"High\", \"Normal\", \"Low\" or \"Lowest\" (case-sensitive), got {p:?}"
            ))
        }),
    }
}

#[derive(Deserialize)]
struct SendGroupMsg {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Random")]
    random: Option<u32>,
    #[serde(rename = "MsgPriority")]
    msg_priority: Option<String>,
    #[serde(rename = "MsgBody")]
    msg_body: Vec<MsgElem>,
    #[serde(rename = "From_Account")]
    from_account: Option<String>,
    #[serde(rename = "CloudCustomData", default)]
    cloud_custom_data: String,
    /// `ForbidBeforeSendMsgCallback` / `ForbidAfterSendMsgCallback`.
    #[serde(rename = "ForbidCallbackControl", default)]
    forbid_callback_control: Vec<String>,
    /// Not valid for AVChatRoom in the cloud; accepted and ignored.
    #[serde(rename = "OnlineOnlyFlag", default)]
    _online_only_flag: Option<i64>,
    /// Targeted group messages: not available for AVChatRoom, refused.
    #[serde(rename = "To_Account", default)]
    to_account: Option<Value>,
}

async fn send_group_msg(state: &Shared, caller: &Caller, req: SendGroupMsg) -> V4 {
    let admin = caller.admin.as_str();
    // The cloud delivers a message with `To_Account` to those members only, and not
    // in an AVChatRoom; delivering it to the whole room would leak what the backend
    // meant for a few.
    if req.to_account.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(Fail::param("To_Account (a targeted group message) is not supported for AVChatRoom groups"));
    }
    let priority = parse_priority(req.msg_priority.as_deref())?;
    let from = req.from_account.filter(|f| !f.is_empty()).unwrap_or_else(|| admin.to_owned());
    check_user_id("From_Account", &from)?;
    // The impersonated sender must be an imported account (the cloud's rule), so a
    // typo is not delivered under an empty name. App admins need no import.
    let sender = match load_user(state, &from).await? {
        Some(record) => SenderProfile::from(&record),
        None if state.app.admins.contains(&from) => SenderProfile { user_id: from.clone(), ..Default::default() },
        None => {
            return Err(Fail::param(format!(
                "From_Account '{from}' does not exist; import it first (im_open_login_svc/account_import)"
            )));
        }
    };
    let random = req.random.unwrap_or_else(|| onair_shell::seed() as u32);
    let forbid = |name: &str| req.forbid_callback_control.iter().any(|c| c == name);
    let ctx = SendCtx {
        origin: caller.origin.clone(),
        forbid_before: forbid("ForbidBeforeSendMsgCallback"),
        forbid_after: forbid("ForbidAfterSendMsgCallback"),
        ..SendCtx::admin(admin)
    };
    let result = state
        .hub
        .send_as_with(
            &req.group_id,
            Outgoing { sender, priority, random, body: req.msg_body, cloud_custom_data: req.cloud_custom_data },
            ctx,
        )
        .await?;
    Ok(fields(json!({"MsgSeq": result.seq, "MsgTime": result.time, "MsgDropReason": result.drop_reason})))
}

#[derive(Deserialize)]
struct SystemNotification {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Content")]
    content: String,
    #[serde(rename = "ToMembers_Account", default)]
    to_members: Vec<String>,
}

fn send_group_system_notification(state: &Shared, req: SystemNotification) -> V4 {
    if !req.to_members.is_empty() {
        return Err(Fail::param("an AVChatRoom system notification goes to all members; omit ToMembers_Account"));
    }
    if req.content.is_empty() {
        return Err(Fail::param("Content must not be empty"));
    }
    if req.content.len() > MAX_MESSAGE_BYTES {
        return Err(Fail::new(80002, format!("Content exceeds {MAX_MESSAGE_BYTES} bytes")));
    }
    state.hub.notify_room(&req.group_id, req.content)?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
struct BroadcastMsg {
    #[serde(rename = "From_Account")]
    from_account: Option<String>,
    #[serde(rename = "Random", default)]
    _random: Option<u32>,
    #[serde(rename = "MsgBody")]
    msg_body: Vec<MsgElem>,
    #[serde(rename = "CloudCustomData", default)]
    cloud_custom_data: String,
}

fn send_broadcast_msg(state: &Shared, admin: &str, req: BroadcastMsg) -> V4 {
    let from = req.from_account.filter(|f| !f.is_empty()).unwrap_or_else(|| admin.to_owned());
    check_user_id("From_Account", &from)?;
    let (seq, _rooms) = state.hub.broadcast(from, req.msg_body, req.cloud_custom_data)?;
    Ok(fields(json!({ "MsgSeq": seq })))
}

#[derive(Deserialize)]
struct GetSimple {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "ReqMsgNumber")]
    req_msg_number: u32,
    #[serde(rename = "ReqMsgSeq")]
    req_msg_seq: Option<u64>,
}

fn priority_number(p: Priority) -> u8 {
    match p {
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
        Priority::Lowest => 4,
    }
}

async fn group_msg_get_simple(state: &Shared, req: GetSimple) -> V4 {
    if req.req_msg_number == 0 {
        return Err(Fail::param("ReqMsgNumber must be 1-20"));
    }
    state.hub.get(&req.group_id)?;
    let limit = req.req_msg_number.min(20) as usize;
    let before = req.req_msg_seq.map(|s| s.saturating_add(1));
    let msgs = state.store.messages_before(&req.group_id, before, limit).await.map_err(storage)?;
    let finished = msgs.len() < limit || msgs.last().is_some_and(|m| m.seq <= 1);
    let list: Vec<Value> = msgs
        .iter()
        .map(|m| {
            json!({
                "From_Account": m.sender.user_id,
                "IsPlaceMsg": 0,
                "IsSystemMsg": 0,
                "MsgBody": m.body,
                "MsgPriority": priority_number(m.priority),
                "MsgRandom": m.random,
                "MsgSeq": m.seq,
                "MsgTimeStamp": m.time_secs(),
                "CloudCustomData": m.cloud_custom_data,
            })
        })
        .collect();
    Ok(fields(json!({"GroupId": req.group_id, "IsFinished": u8::from(finished), "RspMsgList": list})))
}

// ---------------------------------------------------------------- membership

fn get_online_member_num(state: &Shared, req: GroupOnly) -> V4 {
    Ok(fields(json!({ "OnlineMemberNum": state.hub.get(&req.group_id)?.online() })))
}

#[derive(Deserialize)]
struct GetMembers {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Timestamp", default)]
    _timestamp: u64,
    #[serde(rename = "Mark", default)]
    mark: Option<u64>,
}

fn get_members(state: &Shared, req: GetMembers) -> V4 {
    let room = state.hub.get(&req.group_id)?;
    let marked = req.mark.map(|m| state.hub.marked(&req.group_id, m)).transpose()?;
    let list: Vec<Value> = room
        .recent_members(usize::MAX)
        .into_iter()
        .filter(|m| marked.as_ref().is_none_or(|set| set.contains(&m.brief.user_id)))
        .map(|m| {
            json!({
                "Member_Account": m.brief.user_id,
                "JoinTime": m.joined_at / 1000,
                "NickName": m.brief.nick,
                "Avatar": m.brief.avatar,
            })
        })
        .collect();
    Ok(fields(json!({"MemberList": list, "NextTimestamp": 0})))
}

#[derive(Deserialize)]
struct CheckMembers {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Member_Account")]
    member_account: Vec<String>,
}

fn check_members(state: &Shared, req: CheckMembers) -> V4 {
    let room = state.hub.get(&req.group_id)?;
    let found: Vec<&String> = req.member_account.iter().filter(|id| room.has_user(id)).collect();
    Ok(fields(json!({ "Member_Account": found })))
}

#[derive(Deserialize)]
struct ForbidSendMsg {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Members_Account")]
    members_account: Vec<String>,
    /// Current name of the duration.
    #[serde(rename = "MuteTime", default)]
    mute_time: Option<u64>,
    /// Legacy name of the duration.
    #[serde(rename = "ShutUpTime", default)]
    shut_up_time: Option<u64>,
}

async fn forbid_send_msg(state: &Shared, req: ForbidSendMsg) -> V4 {
    let Some(secs) = req.mute_time.or(req.shut_up_time) else {
        return Err(Fail::param("MuteTime (seconds; 0 = unmute) is required"));
    };
    if req.members_account.len() > 500 {
        return Err(Fail::param("at most 500 Members_Account per call"));
    }
    state.hub.mute(&req.group_id, &req.members_account, secs).await?;
    Ok(Fields::new())
}

fn muted_accounts(state: &Shared, req: GroupOnly, legacy: bool) -> V4 {
    let list = state.hub.muted(&req.group_id)?;
    Ok(if legacy {
        let list: Vec<Value> =
            list.into_iter().map(|(u, until)| json!({"Member_Account": u, "ShuttedUntil": until})).collect();
        fields(json!({"GroupId": req.group_id, "ShuttedUinList": list}))
    } else {
        let list: Vec<Value> =
            list.into_iter().map(|(u, until)| json!({"Member_Account": u, "MutedUntil": until})).collect();
        fields(json!({"GroupId": req.group_id, "MutedAccountList": list}))
    })
}

#[derive(Deserialize)]
struct BanMembers {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Members_Account")]
    members_account: Vec<String>,
    #[serde(rename = "Duration", default)]
    duration: Option<u64>,
    #[serde(rename = "Description", default)]
    description: String,
}

async fn ban_group_member(state: &Shared, caller: &Caller, req: BanMembers) -> V4 {
    let Some(secs) = req.duration else {
        return Err(Fail::param("Duration (seconds) is required"));
    };
    if req.members_account.len() > 20 {
        return Err(Fail::param("at most 20 Members_Account per call"));
    }
    state.hub.ban(&req.group_id, &req.members_account, secs, &req.description, &caller.admin, &caller.origin).await?;
    Ok(Fields::new())
}

async fn unban_group_member(state: &Shared, req: BanMembers) -> V4 {
    if req.members_account.len() > 20 {
        return Err(Fail::param("at most 20 Members_Account per call"));
    }
    state.hub.unban(&req.group_id, &req.members_account).await?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
struct BanList {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "Offset", default)]
    offset: usize,
    #[serde(rename = "Limit", default)]
    limit: Option<usize>,
}

fn get_group_ban_member(state: &Shared, req: BanList) -> V4 {
    let limit = req.limit.unwrap_or(100);
    if limit == 0 || limit > 100 {
        return Err(Fail::param("Limit must be 1-100"));
    }
    let (page, next) = state.hub.bans(&req.group_id, req.offset, limit)?;
    let list: Vec<Value> =
        page.into_iter().map(|b| json!({"Member_Account": b.user, "BannedUntil": b.banned_until})).collect();
    Ok(fields(json!({"BannedAccountList": list, "NextOffset": next})))
}

#[derive(Deserialize)]
struct MarkItem {
    #[serde(rename = "Member_Account")]
    member_account: String,
    #[serde(rename = "Marks", default)]
    marks: Vec<u64>,
}

#[derive(Deserialize)]
struct ModifyUserInfo {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "CommandType")]
    command_type: u8,
    #[serde(rename = "MemberList")]
    member_list: Vec<MarkItem>,
}

fn modify_user_info(state: &Shared, req: ModifyUserInfo) -> V4 {
    let add = match req.command_type {
        1 => true,
        2 => false,
        other => return Err(Fail::param(format!("CommandType must be 1 (set) or 2 (delete), got {other}"))),
    };
    let entries: Vec<(String, Vec<u64>)> = req.member_list.into_iter().map(|m| (m.member_account, m.marks)).collect();
    let changed = state.hub.set_marks(&req.group_id, &entries, add)?;
    if changed.is_empty() && !entries.is_empty() {
        return Err(Fail::param("none of the members is online (only mark 500 may be set on offline members)"));
    }
    let list: Vec<Value> = changed.into_iter().map(|u| json!({ "Member_Account": u })).collect();
    Ok(fields(json!({"CommandType": req.command_type, "MemberList": list})))
}

#[derive(Deserialize)]
struct SeqItem {
    #[serde(rename = "MsgSeq")]
    msg_seq: u64,
}

#[derive(Deserialize)]
struct Recall {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "MsgSeqList")]
    msg_seq_list: Vec<SeqItem>,
}

async fn group_msg_recall(state: &Shared, admin: &str, req: Recall) -> V4 {
    if req.msg_seq_list.is_empty() {
        return Err(Fail::param("MsgSeqList must name at least one message"));
    }
    state.hub.get(&req.group_id)?;
    let mut results = Vec::with_capacity(req.msg_seq_list.len());
    for item in req.msg_seq_list {
        // Per-message codes are the cloud's: 10030 for a message that does not exist
        // (or was recalled already), 10010 when the room went away meanwhile, 10002
        // for a storage failure.
        let code = match state.hub.recall(&req.group_id, item.msg_seq, admin).await {
            Ok(()) => 0,
            Err(r) => r.code.number(),
        };
        results.push(json!({"MsgSeq": item.msg_seq, "RetCode": code}));
    }
    Ok(fields(json!({ "RecallRetList": results })))
}

#[derive(Deserialize)]
struct ModifyAdmin {
    #[serde(rename = "GroupId")]
    group_id: String,
    #[serde(rename = "CommandType")]
    command_type: u8,
    #[serde(rename = "Admin_Account")]
    admin_account: Vec<String>,
}

async fn modify_admin(state: &Shared, req: ModifyAdmin) -> V4 {
    let add = match req.command_type {
        1 => true,
        2 => false,
        other => return Err(Fail::param(format!("CommandType must be 1 (set) or 2 (unset), got {other}"))),
    };
    state.hub.set_room_admins(&req.group_id, &req.admin_account, add).await?;
    Ok(Fields::new())
}

fn get_admin_list(state: &Shared, req: GroupOnly) -> V4 {
    let list: Vec<Value> =
        state.hub.room_admins(&req.group_id)?.into_iter().map(|u| json!({ "Admin_Account": u })).collect();
    Ok(fields(json!({ "Admin_List": list })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_to_the_history_integers() {
        assert_eq!(priority_number(Priority::High), 1);
        assert_eq!(priority_number(Priority::Lowest), 4);
        assert!(parse_priority(Some("high")).is_err());
        assert_eq!(parse_priority(None).ok(), Some(Priority::Normal));
    }

    #[test]
    fn wrong_types_are_10004() {
        let body = fields(json!({"GroupId": 5}));
        let r: Result<GroupOnly, Fail> = parse(body);
        assert_eq!(r.err().map(|f| f.code), Some(10004));
    }
}
