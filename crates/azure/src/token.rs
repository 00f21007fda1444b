//! Access tokens as IMDS and Entra ID send them, and as upstream NMI answers them.
//!
//! ```text
//!  IMDS / AAD v1:  {"access_token":"…","expires_in":"86399","expires_on":"1700000000",
//!                   "not_before":"…","resource":"…","token_type":"Bearer","client_id":"…"}
//!  AAD v2:         {"access_token":"…","expires_in":3599,"token_type":"Bearer"}
//!  App Service:    "expires_on":"6/20/2019 11:37:52 PM +00:00"
//!        │  Token::from_response (numbers or numeric strings; dates normalised like ADAL)
//!        ▼
//!  Token ── serde::Serialize ──▶ NMI's answer: every value a string, keys in upstream's order
//!  {"access_token","refresh_token":"","expires_in","expires_on","not_before","resource","token_type"}
//! ```
//!
//! `Debug` shows the access token as `<redacted>`.
use std::time::{Duration, SystemTime};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

/// An access token and what the issuer said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The bearer token.
    pub access_token: Secret,
    /// Usually empty (client-credentials and IMDS grants issue none).
    pub refresh_token: String,
    /// Lifetime in seconds as sent.
    pub expires_in: Option<u64>,
    /// Expiry as epoch seconds (dates normalised), as sent.
    pub expires_on: Option<u64>,
    /// `not_before` as sent (epoch seconds as a string), if any.
    pub not_before: Option<String>,
    /// The resource (audience) the token is for.
    pub resource: String,
    /// Usually `Bearer`.
    pub token_type: String,
    /// The client id IMDS names, if it named one.
    pub client_id: Option<String>,
    /// When the response was received, epoch seconds.
    pub obtained_at: u64,
}

/// A token response that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenParseError {
    /// Not a JSON object.
    #[error("the response is not a JSON object: {0}")]
    NotJson(String),
    /// `access_token` missing or empty.
    #[error("the response has no access_token")]
    NoAccessToken,
    /// Neither `expires_in` nor `expires_on` is usable.
    #[error("the response has neither a usable expires_in nor expires_on")]
    NoExpiry,
    /// `expires_on` is in no format ADAL understands.
    #[error("expires_on {0:?} is neither epoch seconds nor a date like \"6/20/2019 11:37:52 PM +00:00\"")]
    BadExpiresOn(String),
}

#[derive(Deserialize)]
struct Wire {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<Value>,
    expires_on: Option<Value>,
    not_before: Option<Value>,
    resource: Option<String>,
    token_type: Option<String>,
    client_id: Option<String>,
}

impl Token {
    /// Parses a token endpoint's JSON body received at `now`. `resource` fills in a missing
    /// `resource` field (v2 responses carry none).
    pub fn from_response(body: &[u8], resource: &str, now: SystemTime) -> Result<Self, TokenParseError> {
        let wire: Wire = serde_json::from_slice(body).map_err(|e| TokenParseError::NotJson(e.to_string()))?;
        let access_token =
            wire.access_token.filter(|t| !t.is_empty()).ok_or(TokenParseError::NoAccessToken)?;
        let expires_in = wire.expires_in.as_ref().and_then(number);
        let expires_on = match wire.expires_on.as_ref() {
            None | Some(Value::Null) => None,
            Some(v) => Some(expires_on(v)?),
        };
        if expires_in.is_none() && expires_on.is_none() {
            return Err(TokenParseError::NoExpiry);
        }
        let not_before = match wire.not_before {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(v @ Value::Number(_)) => number(&v).map(|n| n.to_string()),
            _ => None,
        };
        Ok(Self {
            access_token: Secret::new(access_token),
            refresh_token: wire.refresh_token.unwrap_or_default(),
            expires_in,
            expires_on,
            not_before,
            resource: wire.resource.filter(|r| !r.is_empty()).unwrap_or_else(|| resource.to_string()),
            token_type: wire.token_type.filter(|t| !t.is_empty()).unwrap_or_else(|| "Bearer".to_string()),
            client_id: wire.client_id.filter(|c| !c.is_empty()),
            obtained_at: epoch_seconds(now),
        })
    }

    /// Expiry as epoch seconds: `expires_on` when sent, else receipt time plus `expires_in`.
    pub fn expires_at(&self) -> u64 {
        self.expires_on.unwrap_or_else(|| self.obtained_at.saturating_add(self.expires_in.unwrap_or(0)))
    }

    /// Whether the token expires within `margin` of `now`.
    pub fn expires_within(&self, margin: Duration, now: SystemTime) -> bool {
        epoch_seconds(now).saturating_add(margin.as_secs()) >= self.expires_at()
    }

    /// A copy whose `expires_in` counts from `now` (for answering from a cache).
    pub fn aged(&self, now: SystemTime) -> Self {
        Self {
            expires_in: Some(self.expires_at().saturating_sub(epoch_seconds(now))),
            expires_on: Some(self.expires_at()),
            ..self.clone()
        }
    }
}

/// NMI's answer shape: all seven keys, every value a string.
impl Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let expires_in =
            self.expires_in.unwrap_or_else(|| self.expires_at().saturating_sub(self.obtained_at)).to_string();
        let mut st = s.serialize_struct("Token", 7)?;
        st.serialize_field("access_token", self.access_token.expose())?;
        st.serialize_field("refresh_token", &self.refresh_token)?;
        st.serialize_field("expires_in", &expires_in)?;
        st.serialize_field("expires_on", &self.expires_at().to_string())?;
        st.serialize_field("not_before", self.not_before.as_deref().unwrap_or(""))?;
        st.serialize_field("resource", &self.resource)?;
        st.serialize_field("token_type", &self.token_type)?;
        st.end()
    }
}

/// Seconds since the epoch (0 before it).
pub fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A non-negative integer sent as a JSON number (fractions truncated) or a numeric string.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `expires_on` the way ADAL reads it: a number, a numeric string, or a date string in
/// `M/D/YYYY h:mm:ss AM|PM +00:00` or `M/D/YYYY H:mm:ss +00:00` form (UTC).
fn expires_on(v: &Value) -> Result<u64, TokenParseError> {
    if let Some(n) = number(v) {
        return Ok(n);
    }
    let text = match v {
        Value::String(s) => s.as_str(),
        other => return Err(TokenParseError::BadExpiresOn(other.to_string())),
    };
    parse_adal_date(text).ok_or_else(|| TokenParseError::BadExpiresOn(text.to_string()))
}

fn parse_adal_date(text: &str) -> Option<u64> {
    let rest = text.trim().strip_suffix("+00:00")?.trim_end();
    let (rest, meridiem) = match rest.rsplit_once(' ') {
        Some((r, m)) if m.eq_ignore_ascii_case("AM") || m.eq_ignore_ascii_case("PM") => {
            (r.trim_end(), Some(m.eq_ignore_ascii_case("PM")))
        }
        _ => (rest, None),
    };
    let (date, time) = rest.split_once(' ')?;
    let mut d = date.split('/').map(|p| p.parse::<u64>().ok());
    let (month, day, year) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.trim().split(':').map(|p| p.parse::<u64>().ok());
    let (mut hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    match meridiem {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    let small = |n: u64| i8::try_from(n).ok();
    // A leap second (`:60`) counts as the last second of its minute.
    let time = jiff::civil::Time::new(small(hour)?, small(minute)?, small(second.min(59))?, 0).ok()?;
    let date = jiff::civil::Date::new(i16::try_from(year).ok()?, small(month)?, small(day)?).ok()?;
    let at = date.to_datetime(time).to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    u64::try_from(at.timestamp().as_second()).ok()
}

#[cfg(test)]
#[path = "tests/token.rs"]
mod tests;
