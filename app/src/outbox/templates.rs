//! The emails the instance sends, each with a plain-text and an HTML part. Every value put into
//! the HTML is escaped.

use super::ssr::NewMail;
use crate::shared::email::EmailAddress;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

fn html_page(body: &str) -> String {
    format!("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">{body}</body></html>")
}

pub fn invitation(instance: &str, inviter: &str, name: &str, email: &EmailAddress, link: &str, hours: i64) -> NewMail {
    NewMail {
        kind: "invitation",
        to_addr: email.clone(),
        to_name: Some(name.to_owned()),
        subject: format!("You are invited to {instance}"),
        text: format!(
            "Hello {name},\n\n{inviter} invited you to {instance}. Set your password here (the link works once, for {hours} hours):\n\n{link}\n"
        ),
        html: html_page(&format!(
            "<p>Hello {},</p><p>{} invited you to {}. Set your password here (the link works once, for {hours} hours):</p><p><a href=\"{}\">Set your password</a></p>",
            text(name),
            text(inviter),
            text(instance),
            attr(link)
        )),
    }
}

pub fn password_reset(instance: &str, name: &str, email: &EmailAddress, link: &str) -> NewMail {
    NewMail {
        kind: "password_reset",
        to_addr: email.clone(),
        to_name: Some(name.to_owned()),
        subject: format!("Reset your {instance} password"),
        text: format!(
            "Hello {name},\n\nSomeone asked to reset your {instance} password. If it was you, set a new one here (the link works once, for 1 hour):\n\n{link}\n\nIf it was not you, ignore this email.\n"
        ),
        html: html_page(&format!(
            "<p>Hello {},</p><p>Someone asked to reset your {} password. If it was you, set a new one here (the link works once, for 1 hour):</p><p><a href=\"{}\">Reset your password</a></p><p>If it was not you, ignore this email.</p>",
            text(name),
            text(instance),
            attr(link)
        )),
    }
}

pub fn smtp_changed(
    instance: &str,
    changed_by: &str,
    fields: &[String],
    admin_name: &str,
    admin_email: &EmailAddress,
) -> NewMail {
    let list = fields.join(", ");
    let items: String = fields.iter().map(|f| format!("<li>{}</li>", text(f))).collect();
    NewMail {
        kind: "admin_notice",
        to_addr: admin_email.clone(),
        to_name: Some(admin_name.to_owned()),
        subject: format!("SMTP settings were changed by {changed_by}"),
        text: format!("SMTP settings were changed by {changed_by} on {instance}.\n\nChanged: {list}\n"),
        html: html_page(&format!(
            "<p>SMTP settings were changed by {} on {}.</p><p>Changed:</p><ul>{items}</ul>",
            text(changed_by),
            text(instance)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_html_are_escaped_and_both_parts_exist() {
        let mail = invitation(
            "Mail<room>",
            "Eve \"admin\"",
            "<script>x</script>",
            &"a@example.com".parse().unwrap(),
            "https://x/?a=1&b=\"2\"",
            72,
        );
        assert!(mail.html.contains("&lt;script&gt;x&lt;/script&gt;"), "{}", mail.html);
        assert!(mail.html.contains("Mail&lt;room&gt;"));
        assert!(mail.html.contains("href=\"https://x/?a=1&amp;b=&quot;2&quot;\""), "{}", mail.html);
        assert!(!mail.html.contains("<script>"));
        assert!(mail.text.contains("<script>x</script>"), "plain text stays as typed");
        let notice = smtp_changed(
            "M",
            "Ann <ann@x.io>",
            &["Email Server".into(), "Password".into()],
            "Bo",
            &"bo@x.io".parse().unwrap(),
        );
        assert_eq!(notice.subject, "SMTP settings were changed by Ann <ann@x.io>");
        assert!(notice.html.contains("Ann &lt;ann@x.io&gt;") && notice.html.contains("<li>Password</li>"));
    }
}
