//! Rendering a [`Message`] as an RFC 5322 `.eml` file that any mail client opens.

use cohort_plugin_api::wire::Message;

/// Renders a message. `key` becomes the `Message-ID` and an `X-Cohort-Key` header, so the file
/// says which operation produced it.
pub fn render(key: &str, message: &Message, date: &str) -> Result<String, String> {
    if message.to.is_empty() {
        return Err("the message has no recipient".to_owned());
    }
    let mut out = String::new();
    let mut header = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(&encode_header(value));
        out.push_str("\r\n");
    };
    if let Some(from) = &message.from {
        header("From", from);
    }
    header("To", &message.to.join(", "));
    header("Subject", message.subject.as_deref().unwrap_or(""));
    header("Date", date);
    header(
        "Message-ID",
        &format!("<{}@cohort.outbox>", super::files::file_stem(key)),
    );
    header("X-Cohort-Key", key);
    for (name, value) in &message.headers {
        if name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            header(name, value);
        } else {
            return Err(format!("invalid header name `{name}`"));
        }
    }
    out.push_str("MIME-Version: 1.0\r\n");
    let text = message.text.as_deref();
    let html = message.html.as_deref();
    match (text, html) {
        (Some(text), Some(html)) => {
            let boundary = format!(
                "cohort-{}",
                super::files::file_stem(key).len() * 7919 + text.len() + html.len()
            );
            out.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
            ));
            for (kind, body) in [("plain", text), ("html", html)] {
                out.push_str(&format!("--{boundary}\r\n"));
                out.push_str(&format!("Content-Type: text/{kind}; charset=utf-8\r\n"));
                out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
                out.push_str(&crlf(body));
                out.push_str("\r\n");
            }
            out.push_str(&format!("--{boundary}--\r\n"));
        }
        (text, html) => {
            let (kind, body) = match (text, html) {
                (_, Some(html)) => ("html", html),
                (Some(text), None) => ("plain", text),
                (None, None) => ("plain", ""),
            };
            out.push_str(&format!("Content-Type: text/{kind}; charset=utf-8\r\n"));
            out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
            out.push_str(&crlf(body));
            out.push_str("\r\n");
        }
    }
    Ok(out)
}

/// Header values: non-ASCII text as an RFC 2047 encoded word; line breaks removed, so a value
/// can never inject a header.
fn encode_header(value: &str) -> String {
    let flat: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    if flat.is_ascii() {
        flat
    } else {
        format!("=?utf-8?B?{}?=", base64(flat.as_bytes()))
    }
}

fn crlf(body: &str) -> String {
    body.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_and_html_message_becomes_multipart_alternative() {
        let m = Message {
            from: Some("shop@example.com".into()),
            to: vec!["ann@example.com".into()],
            subject: Some("Ciao Zoë".into()),
            text: Some("Hi\nthere".into()),
            html: Some("<p>Hi</p>".into()),
            headers: vec![],
        };
        let eml = render("k1", &m, "Mon, 01 Jan 2024 00:00:00 +0000").unwrap();
        assert!(eml.contains("To: ann@example.com\r\n"));
        assert!(eml.contains("Subject: =?utf-8?B?Q2lhbyBab8Or?=\r\n"));
        assert!(eml.contains("multipart/alternative"));
        assert!(eml.contains("Hi\r\nthere"));
        assert!(eml.contains("X-Cohort-Key: k1\r\n"));
    }

    #[test]
    fn header_values_cannot_inject_headers() {
        let m = Message {
            to: vec!["a@example.com".into()],
            subject: Some("hi\r\nBcc: evil@example.com".into()),
            ..Message::default()
        };
        let eml = render("k", &m, "d").unwrap();
        assert!(!eml.contains("\r\nBcc:"));
    }

    #[test]
    fn a_message_without_recipient_is_refused() {
        assert!(render("k", &Message::default(), "d").is_err());
    }
}
