//! A rendered [`Message`] as the bytes a receiving server checks: `multipart/alternative` with
//! text/plain first (derived from the HTML when the campaign has none), encoded-words for
//! non-ASCII headers, `Date`, a `Message-ID` derived from the operation's key, and the
//! unsubscribe headers of RFC 2369 and RFC 8058. One recipient per message, always.
//!
//! Nothing here does I/O: the same operation gives the same message (but for `Date`), so a
//! retried message carries the same `Message-ID` and a receiver can drop the copy.

use cohort_plugin_api::wire::{Message, Operation};
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use xxhash_rust::xxh3::xxh3_128;

/// Headers the plugin writes itself; a campaign may not set them.
const OWN_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe-post",
];

/// A message ready for the wire.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `MAIL FROM` and the one `RCPT TO`.
    pub envelope: Envelope,
    /// The message, headers and body, as sent after `DATA`.
    pub bytes: Vec<u8>,
    /// Its `Message-ID`, with the angle brackets.
    pub message_id: String,
}

/// The `Message-ID` of the operation with this key, at this domain: the same key always gives
/// the same id (an XXH3-128 of the key: keys hold characters an id may not).
pub fn message_id(key: &str, domain: &str) -> String {
    format!("<cohort.{:032x}@{domain}>", xxh3_128(key.as_bytes()))
}

/// Builds the message of a `send` operation, or says why it cannot be sent (the record is then
/// rejected without reaching the server).
pub fn prepare(op: &Operation, unsubscribe_mailto: Option<&str>) -> Result<Prepared, String> {
    let message = op
        .message
        .as_ref()
        .ok_or("a send operation needs a rendered message")?;
    let from: Mailbox = message
        .from
        .as_deref()
        .ok_or("the message has no sender (the campaign's `from`)")?
        .parse()
        .map_err(|e| format!("from: not an address ({e})"))?;
    let to: Mailbox = match message.to.as_slice() {
        [one] => one
            .parse()
            .map_err(|e| format!("to: `{one}` is not an address ({e})"))?,
        [] => return Err("the customer has no email address".to_owned()),
        many => {
            return Err(format!(
                "one recipient per message, and this one has {}",
                many.len()
            ));
        }
    };
    let message_id = message_id(&op.key, from.email.domain());
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(message.subject.clone().unwrap_or_default())
        .date_now()
        .message_id(Some(message_id.clone()));

    let mut unsubscribe = Vec::new();
    for (name, value) in &message.headers {
        let value = value.replace(['\r', '\n'], " ");
        let lower = name.to_ascii_lowercase();
        if lower == "reply-to" {
            let mailbox: Mailbox = value
                .parse()
                .map_err(|e| format!("Reply-To: not an address ({e})"))?;
            builder = builder.reply_to(mailbox);
        } else if lower == "list-unsubscribe" {
            unsubscribe.extend(
                value
                    .split(',')
                    .map(|u| u.trim().trim_start_matches('<').trim_end_matches('>'))
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
            );
        } else if OWN_HEADERS.contains(&lower.as_str()) {
            return Err(format!("the header `{name}` is the plugin's to write"));
        } else {
            let header = HeaderName::new_from_ascii(name.clone())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            builder = builder.raw_header(HeaderValue::new(header, value));
        }
    }
    if let Some(mailto) = unsubscribe_mailto {
        unsubscribe.push(format!("mailto:{mailto}?subject=unsubscribe"));
    }
    if !unsubscribe.is_empty() {
        let list: Vec<String> = unsubscribe.iter().map(|u| format!("<{u}>")).collect();
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            list.join(", "),
        ));
        // RFC 8058: one click works only with an https link, which the mail client POSTs.
        if unsubscribe.iter().any(|u| u.starts_with("https://")) {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        }
    }

    let email = match body(message)? {
        Body::Alternative(text, html) => {
            builder.multipart(MultiPart::alternative_plain_html(text, html))
        }
        Body::Plain(text) => builder.singlepart(SinglePart::plain(text)),
    }
    .map_err(|e| format!("building the message: {e}"))?;
    let envelope =
        Envelope::new(Some(from.email), vec![to.email]).map_err(|e| format!("envelope: {e}"))?;
    Ok(Prepared {
        envelope,
        bytes: email.formatted(),
        message_id,
    })
}

enum Body {
    Alternative(String, String),
    Plain(String),
}

fn body(message: &Message) -> Result<Body, String> {
    match (&message.text, &message.html) {
        (Some(text), Some(html)) => Ok(Body::Alternative(text.clone(), html.clone())),
        (None, Some(html)) => Ok(Body::Alternative(html_to_text(html), html.clone())),
        (Some(text), None) => Ok(Body::Plain(text.clone())),
        (None, None) => Err("the message has no body (neither text nor html)".to_owned()),
    }
}

/// A readable plain-text version of an HTML body: block ends become line breaks, links keep
/// their target (`label (https://…)`), scripts and styles go, the common entities are decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut href: Option<String> = None;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let Some(gt) = rest.find('>') else {
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let closing = tag.starts_with('/');
        match name.as_str() {
            "script" | "style" | "head" if !closing => {
                let end = format!("</{name}");
                let at = rest.to_ascii_lowercase().find(&end).unwrap_or(rest.len());
                rest = &rest[at..];
            }
            "br" => out.push('\n'),
            "p" | "div" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "ul" | "ol"
            | "table" => out.push('\n'),
            "li" if !closing => out.push_str("\n- "),
            "a" if !closing => href = attribute(tag, "href"),
            "a" => {
                if let Some(url) = href.take().filter(|u| !u.starts_with('#')) {
                    out.push_str(&format!(" ({url})"));
                }
            }
            _ => {}
        }
    }
    out.push_str(rest);
    let text = decode_entities(&out);
    // Collapse runs of blanks, keep at most one empty line.
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() && lines.last().is_none_or(String::is_empty) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let at = lower.find(&format!("{name}="))? + name.len() + 1;
    let value = &tag[at..];
    let value = match value.chars().next()? {
        q @ ('"' | '\'') => value[1..].split(q).next()?,
        _ => value.split(|c: char| c.is_whitespace()).next()?,
    };
    Some(decode_entities(value))
}

fn decode_entities(text: &str) -> String {
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_plugin_api::CustomerId;
    use cohort_plugin_api::wire::Action;
    use serde_json::Value;

    fn op(message: Message) -> Operation {
        Operation {
            key: "acme/winback/42/1-send".into(),
            action: Action::Send,
            customer_id: CustomerId::new("42"),
            customer: None,
            payload: Value::Null,
            previous: Value::Null,
            message: Some(message),
        }
    }

    fn message() -> Message {
        Message {
            from: Some("Shop <shop@shop.example>".into()),
            to: vec!["ann@example.com".into()],
            subject: Some("Hello".into()),
            text: None,
            html: Some(
                "<p>Hi <b>Ann</b></p><p><a href=\"https://shop.example/x\">Shop</a></p>".into(),
            ),
            headers: vec![(
                "List-Unsubscribe".into(),
                "<https://shop.example/u/42>".into(),
            )],
        }
    }

    #[test]
    fn html_becomes_readable_text_with_its_links() {
        let text = html_to_text(
            "<html><head><style>p{}</style></head><body><p>Hi&nbsp;Ann &amp; co</p>\
             <ul><li>one</li><li>two</li></ul><a href='https://s.example/?a=1&amp;b=2'>Shop</a>\
             <script>x()</script></body></html>",
        );
        assert_eq!(
            text,
            "Hi Ann & co\n\n- one\n- two\nShop (https://s.example/?a=1&b=2)"
        );
    }

    #[test]
    fn the_message_id_depends_only_on_the_key() {
        let a = prepare(&op(message()), None).unwrap();
        let b = prepare(&op(message()), None).unwrap();
        assert_eq!(a.message_id, b.message_id);
        assert!(a.message_id.ends_with("@shop.example>"), "{}", a.message_id);
        let mut other = op(message());
        other.key = "acme/winback/43/1-send".into();
        assert_ne!(prepare(&other, None).unwrap().message_id, a.message_id);
    }

    #[test]
    fn one_recipient_per_message() {
        let mut m = message();
        m.to.push("bob@example.com".into());
        let err = prepare(&op(m), None).unwrap_err();
        assert!(err.contains("one recipient"), "{err}");
        let mut m = message();
        m.to.clear();
        assert!(prepare(&op(m), None).is_err());
    }

    #[test]
    fn a_campaign_cannot_set_the_plugins_own_headers() {
        let mut m = message();
        m.headers.push(("Bcc".into(), "spy@example.com".into()));
        let err = prepare(&op(m), None).unwrap_err();
        assert!(err.contains("Bcc"), "{err}");
    }

    #[test]
    fn one_click_needs_an_https_link() {
        let mut m = message();
        m.headers.clear();
        let p = prepare(&op(m), Some("unsub@shop.example")).unwrap();
        let text = String::from_utf8(p.bytes).unwrap();
        assert!(text.contains("List-Unsubscribe: <mailto:unsub@shop.example?subject=unsubscribe>"));
        assert!(!text.contains("List-Unsubscribe-Post"), "{text}");
    }
}
