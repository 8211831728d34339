//! The sensitive-word lists of the app and of each room, and the screening of a
//! message's text fields against them (the pure matcher is `onair_core::filter`).

use onair_core::filter::{self, FilterAction, WordList};
use onair_core::message::MsgElem;
use onair_core::{Code, Rejection};

use crate::*;
use onair_core::admission::Screened;

/// The text fields of an element that the word lists apply to.
fn text_fields(elem: &mut MsgElem) -> Vec<&mut String> {
    match elem {
        MsgElem::Text(t) => vec![&mut t.text],
        MsgElem::Custom(c) => {
            let mut fields = vec![&mut c.data];
            fields.extend(c.desc.as_mut());
            fields.extend(c.ext.as_mut());
            fields
        }
        _ => Vec::new(),
    }
}

/// Reject > Drop > Mask.
fn more_severe(a: FilterAction, b: FilterAction) -> FilterAction {
    let rank = |x| match x {
        FilterAction::Reject => 2,
        FilterAction::Drop => 1,
        FilterAction::Mask => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// The stored name of an action.
pub fn action_name(action: FilterAction) -> &'static str {
    match action {
        FilterAction::Reject => "reject",
        FilterAction::Mask => "mask",
        FilterAction::Drop => "drop",
    }
}

/// Parses an action name.
pub fn parse_action(name: &str) -> Result<FilterAction, Rejection> {
    match name {
        "reject" => Ok(FilterAction::Reject),
        "mask" => Ok(FilterAction::Mask),
        "drop" => Ok(FilterAction::Drop),
        other => {
            Err(Rejection::new(Code::InvalidParam, format!("unknown filter action '{other}' (reject, mask or drop)")))
        }
    }
}

pub(super) fn parse_filter(action: &str, words: Vec<String>) -> Result<Arc<WordList>, Rejection> {
    let action = parse_action(action)?;
    WordList::new(&words, action).map(Arc::new).map_err(|e| Rejection::new(Code::InvalidParam, e.to_string()))
}

impl Hub {
    /// The sensitive-word lists in force for a room (the app's, then the room's).
    pub(super) fn word_lists(&self, room: &Room) -> Vec<Arc<WordList>> {
        self.app_filter.read().iter().chain(room.filter.lock().iter()).cloned().collect()
    }

    /// Applies the word lists to every text field of a message sent by a client
    /// (the server API's own messages are the backend's responsibility): reject
    /// (80001), drop silently, or mask in place.
    pub(super) fn screen(&self, room: &Room, msg: &mut Outgoing) -> Result<Screened, Rejection> {
        let lists = self.word_lists(room);
        if lists.is_empty() {
            return Ok(Screened::Deliver);
        }
        let lists: Vec<&WordList> = lists.iter().map(|l| l.as_ref()).collect();
        let mut worst: Option<FilterAction> = None;
        for elem in &mut msg.body {
            for field in text_fields(elem) {
                let verdict = filter::check(&lists, field);
                if let Some(action) = verdict.action {
                    worst = Some(worst.map_or(action, |w| more_severe(w, action)));
                    if action == FilterAction::Mask {
                        *field = verdict.text;
                    }
                }
            }
        }
        let Some(action) = worst else { return Ok(Screened::Deliver) };
        metrics::counter!("onair_filter_hits_total", "action" => action_name(action)).increment(1);
        match action {
            FilterAction::Reject => {
                Err(Rejection::new(Code::SensitiveWord, "the message contains a word that is not allowed here"))
            }
            FilterAction::Drop => Ok(Screened::Drop),
            FilterAction::Mask => Ok(Screened::Deliver),
        }
    }

    /// Replaces the app's word list (`None` removes it); stored.
    pub async fn set_app_filter(&self, list: Option<(FilterAction, Vec<String>)>) -> Result<usize, Rejection> {
        let compiled = self.store_filter("", list).await?;
        let n = compiled.as_ref().map_or(0, |l| l.len());
        *self.app_filter.write() = compiled;
        self.changed("", crate::cluster::Part::Filter);
        Ok(n)
    }

    /// Reloads every stored word list (another node changed one).
    pub(super) async fn reload_filters(&self) -> Result<(), Rejection> {
        let mut app = None;
        let mut rooms = std::collections::HashMap::new();
        for (scope, (action, words)) in self.store.filter_lists().await.map_err(crate::internal)? {
            match parse_filter(&action, words) {
                Ok(list) if scope.is_empty() => app = Some(list),
                Ok(list) => {
                    rooms.insert(scope, list);
                }
                Err(r) => tracing::warn!(scope = %scope, error = %r, "stored word list ignored"),
            }
        }
        *self.app_filter.write() = app;
        for room in self.list() {
            *room.filter.lock() = rooms.remove(&room.id);
        }
        Ok(())
    }

    /// Sets the app's word list at start (from the configured file) unless one is stored.
    pub fn seed_app_filter(&self, list: WordList) {
        let mut current = self.app_filter.write();
        if current.is_none() {
            *current = Some(Arc::new(list));
        }
    }

    /// The app's word list: action and words.
    pub fn app_filter(&self) -> Option<(FilterAction, Vec<String>)> {
        self.app_filter.read().as_ref().map(|l| (l.action(), l.words().to_vec()))
    }

    /// Replaces a room's word list (`None` removes it); stored.
    pub async fn set_room_filter(
        &self,
        id: &str,
        list: Option<(FilterAction, Vec<String>)>,
    ) -> Result<usize, Rejection> {
        let room = self.get(id)?;
        let compiled = self.store_filter(id, list).await?;
        let n = compiled.as_ref().map_or(0, |l| l.len());
        *room.filter.lock() = compiled;
        self.changed(id, crate::cluster::Part::Filter);
        Ok(n)
    }

    /// A room's word list: action and words.
    pub fn room_filter(&self, id: &str) -> Result<Option<(FilterAction, Vec<String>)>, Rejection> {
        Ok(self.get(id)?.filter.lock().as_ref().map(|l| (l.action(), l.words().to_vec())))
    }

    async fn store_filter(
        &self,
        scope: &str,
        list: Option<(FilterAction, Vec<String>)>,
    ) -> Result<Option<Arc<WordList>>, Rejection> {
        let Some((action, words)) = list else {
            self.store.set_filter_list(scope, None).await.map_err(internal)?;
            return Ok(None);
        };
        let compiled = WordList::new(&words, action).map_err(|e| Rejection::new(Code::InvalidParam, e.to_string()))?;
        self.store.set_filter_list(scope, Some((action_name(action), compiled.words()))).await.map_err(internal)?;
        Ok(Some(Arc::new(compiled)))
    }
}
