//! Tables of accepted and refused inputs for every parser.

use super::types::*;

#[test]
fn from_accepts() {
    let table = [
        ("mail@example.com", None, "mail@example.com"),
        ("Mailroom <mail@example.com>", Some("Mailroom"), "mail@example.com"),
        ("  Mailroom   <mail@example.com>  ", Some("Mailroom"), "mail@example.com"),
        ("Mail Room 2 <no-reply+alerts@mail.example.co.uk>", Some("Mail Room 2"), "no-reply+alerts@mail.example.co.uk"),
        ("first.last_name@example.com", None, "first.last_name@example.com"),
        ("Jürgen Müller <j@example.de>", Some("Jürgen Müller"), "j@example.de"),
        ("Дмитрий <d@example.ru>", Some("Дмитрий"), "d@example.ru"),
        ("山田太郎 <yamada@example.jp>", Some("山田太郎"), "yamada@example.jp"),
        ("ملك <m@example.sa>", Some("ملك"), "m@example.sa"),
        ("सूचना <s@example.in>", Some("सूचना"), "s@example.in"),
        ("Team 42 <team42@example.com>", Some("Team 42"), "team42@example.com"),
        ("Mailroom<mail@example.com>", Some("Mailroom"), "mail@example.com"),
        ("x@a.io", None, "x@a.io"),
    ];
    for (input, name, address) in table {
        let parsed: FromMailbox = input.parse().unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
        assert_eq!(parsed.name(), name, "{input:?}");
        assert_eq!(parsed.address().to_string(), address, "{input:?}");
    }
}

#[test]
fn from_refuses_naming_the_character_and_position() {
    use FromError::*;
    use FromPart::*;
    let table: Vec<(&str, FromError)> = vec![
        ("", Empty),
        ("   ", Empty),
        ("Mail, Room <m@example.com>", Character { ch: ',', position: 5, part: Name }),
        ("\"Mailroom\" <m@example.com>", Character { ch: '"', position: 1, part: Name }),
        ("Mail;Room <m@example.com>", Character { ch: ';', position: 5, part: Name }),
        ("Mail:Room <m@example.com>", Character { ch: ':', position: 5, part: Name }),
        ("Mail\\Room <m@example.com>", Character { ch: '\\', position: 5, part: Name }),
        ("Mail\r\nBcc: x@evil.com <m@example.com>", Character { ch: '\r', position: 5, part: Name }),
        ("Mail\nRoom <m@example.com>", Character { ch: '\n', position: 5, part: Name }),
        ("Mail\tRoom <m@example.com>", Character { ch: '\t', position: 5, part: Name }),
        ("Mail\u{7f} <m@example.com>", Character { ch: '\u{7f}', position: 5, part: Name }),
        ("Mail (Room) <m@example.com>", Character { ch: '(', position: 6, part: Name }),
        ("Mailroom! <m@example.com>", Character { ch: '!', position: 9, part: Name }),
        ("Me@Home <m@example.com>", Character { ch: '@', position: 3, part: Name }),
        ("m@example.com\r\n", Character { ch: '\r', position: 14, part: Address }),
        ("Mailroom <m\r\n@example.com>", Character { ch: '\r', position: 12, part: Address }),
        ("m'x@example.com", Character { ch: '\'', position: 2, part: Address }),
        ("m#x@example.com", Character { ch: '#', position: 2, part: Address }),
        ("a@example.com, b@example.com", SecondAddress { ch: ',', position: 14 }),
        ("a@example.com;b@example.com", SecondAddress { ch: ';', position: 14 }),
        ("a@example.com b@example.com", SecondAddress { ch: ' ', position: 14 }),
        ("A <a@example.com> <b@example.com>", SecondAddress { ch: '<', position: 19 }),
        ("A <a@example.com>, B <b@example.com>", SecondAddress { ch: ',', position: 18 }),
        ("A <a@example.com> trailing", TrailingText { position: 19 }),
        ("Mailroom <m@example.com", Unclosed),
        ("Mailroom m@example.com>", Character { ch: '>', position: 23, part: Name }),
        ("<m@example.com>", EmptyName),
        ("mail.example.com", MissingAt),
        ("a@b@example.com", MissingAt),
        ("m@localhost", InvalidAddress("m@localhost".into())),
        ("m@example..com", InvalidAddress("m@example..com".into())),
        (".m@example.com", InvalidAddress(".m@example.com".into())),
        ("@example.com", InvalidAddress("@example.com".into())),
        ("m@", InvalidAddress("m@".into())),
        ("jürgen@example.de", NonAsciiAddress),
    ];
    for (input, expected) in &table {
        assert_eq!(input.parse::<FromMailbox>().as_ref(), Err(expected), "{input:?}");
    }
    let message = "Mail, Room <m@example.com>".parse::<FromMailbox>().unwrap_err().to_string();
    assert!(message.starts_with("',' at position 5 is not allowed in the name"), "{message}");
    let message = "Mail\nRoom <m@example.com>".parse::<FromMailbox>().unwrap_err().to_string();
    assert!(message.starts_with("a line break (LF) at position 5"), "{message}");
}

#[test]
fn a_parsed_from_never_contains_a_line_break() {
    for input in ["A\r\n <a@example.com>", "a@example.com\n", "A <a@exa\rmple.com>", "\u{2028}A <a@example.com>"] {
        if let Ok(parsed) = input.parse::<FromMailbox>() {
            assert!(!parsed.to_string().contains(['\r', '\n']), "{input:?}");
        }
    }
}

#[test]
fn host_accepts() {
    let table = [
        ("smtp.example.com", "smtp.example.com"),
        ("  SMTP.Example.COM  ", "smtp.example.com"),
        ("smtp.example.com.", "smtp.example.com"),
        ("localhost", "localhost"),
        ("mail-1.eu-west.example.io", "mail-1.eu-west.example.io"),
        ("127.0.0.1", "127.0.0.1"),
        ("192.168.10.254", "192.168.10.254"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("2001:db8::25", "2001:db8::25"),
        ("[2001:db8::25]", "2001:db8::25"),
        ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
    ];
    for (input, shown) in table {
        let host: SmtpHost = input.parse().unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
        assert_eq!(host.to_string(), shown, "{input:?}");
    }
}

#[test]
fn host_refuses_with_the_bare_host_to_type() {
    use HostError::*;
    let table: Vec<(&str, HostError)> = vec![
        ("", Empty),
        ("smtp://smtp.example.com", SchemeOrPath { bare: "smtp.example.com".into() }),
        ("smtps://smtp.example.com:465", SchemeOrPath { bare: "smtp.example.com".into() }),
        ("smtp.example.com/", SchemeOrPath { bare: "smtp.example.com".into() }),
        ("smtp.example.com/path", SchemeOrPath { bare: "smtp.example.com".into() }),
        ("https://user@mail.example.com/x", SchemeOrPath { bare: "mail.example.com".into() }),
        ("smtp://[::1]:25", SchemeOrPath { bare: "::1".into() }),
        ("smtp.example.com:587", HasPort { bare: "smtp.example.com".into() }),
        ("[::1]:25", HasPort { bare: "::1".into() }),
        ("smtp example.com", Invalid("smtp example.com".into())),
        ("smtp_example.com", Invalid("smtp_example.com".into())),
        ("-smtp.example.com", Invalid("-smtp.example.com".into())),
        ("smtp..example.com", Invalid("smtp..example.com".into())),
        ("999.1.1.1", Invalid("999.1.1.1".into())),
        ("[not-ipv6]", Invalid("[not-ipv6]".into())),
        ("smtp.exämple.com", Invalid("smtp.exämple.com".into())),
    ];
    for (input, expected) in &table {
        assert_eq!(input.parse::<SmtpHost>().as_ref(), Err(expected), "{input:?}");
    }
    let message = "smtp://smtp.example.com".parse::<SmtpHost>().unwrap_err().to_string();
    assert_eq!(message, "Leave out the scheme and path: enter just smtp.example.com");
}

#[test]
fn port_accepts_and_refuses() {
    for (input, port) in [("1", 1), ("25", 25), (" 587 ", 587), ("465", 465), ("65535", 65535), ("0025", 25)] {
        assert_eq!(input.parse::<SmtpPort>().map(SmtpPort::get), Ok(port), "{input:?}");
    }
    let refused = [
        ("", PortError::Empty),
        ("0", PortError::OutOfRange("0".into())),
        ("65536", PortError::OutOfRange("65536".into())),
        ("99999999999", PortError::OutOfRange("99999999999".into())),
        ("-1", PortError::NotANumber("-1".into())),
        ("58 7", PortError::NotANumber("58 7".into())),
        ("smtp", PortError::NotANumber("smtp".into())),
        ("587.0", PortError::NotANumber("587.0".into())),
    ];
    for (input, expected) in refused {
        assert_eq!(input.parse::<SmtpPort>(), Err(expected), "{input:?}");
    }
}

#[test]
fn suggested_ports_follow_the_tls_mode() {
    assert_eq!(SmtpPort::suggested(Some(TlsMode::StartTls)).get(), 587);
    assert_eq!(SmtpPort::suggested(Some(TlsMode::Implicit)).get(), 465);
    assert_eq!(SmtpPort::suggested(None).get(), 25);
    assert_eq!(TlsMode::for_port(465), TlsMode::Implicit);
    assert_eq!(TlsMode::for_port(587), TlsMode::StartTls);
}

#[test]
fn token_url_accepts_https_and_loopback_http_only() {
    for input in [
        "https://login.microsoftonline.com/tenant/oauth2/v2.0/token",
        "https://oauth2.googleapis.com/token",
        "http://127.0.0.1:8080/token",
        "http://localhost:9000/token",
        "http://[::1]:9000/token",
    ] {
        assert!(input.parse::<TokenUrl>().is_ok(), "{input:?}");
    }
    let refused = [
        ("", TokenUrlError::Empty),
        ("login.example.com/token", TokenUrlError::Invalid("login.example.com/token".into())),
        ("http://login.example.com/token", TokenUrlError::NotHttps),
        ("http://10.0.0.5/token", TokenUrlError::NotHttps),
        ("ftp://login.example.com/token", TokenUrlError::Invalid("ftp://login.example.com/token".into())),
        ("https://user:pw@login.example.com/token", TokenUrlError::HasCredentials),
        // The URL parser would drop these silently; an admin is told instead.
        ("https://login.exa\nmple.com/token", TokenUrlError::Character { ch: '\n', position: 18 }),
        ("\0https://x.example/token", TokenUrlError::Character { ch: '\0', position: 1 }),
        ("https://x.example/to\tken", TokenUrlError::Character { ch: '\t', position: 21 }),
    ];
    for (input, expected) in refused {
        assert_eq!(input.parse::<TokenUrl>(), Err(expected), "{input:?}");
    }
}

#[test]
fn lines_and_scopes() {
    assert_eq!(parse_line("  mailer  ", false, 10), Ok("mailer".into()));
    assert_eq!(parse_line("", false, 10), Ok(String::new()));
    assert_eq!(parse_line("", true, 10), Err(TextError::Empty));
    assert_eq!(parse_line("a\r\nb", false, 10), Err(TextError::Character { ch: '\r', position: 2 }));
    assert_eq!(parse_line("abcdefghijk", false, 10), Err(TextError::TooLong(10)));
    assert_eq!(
        parse_scopes("https://outlook.office365.com/.default  offline_access"),
        Ok(vec!["https://outlook.office365.com/.default".into(), "offline_access".into()])
    );
    assert_eq!(parse_scopes(""), Ok(vec![]));
    assert_eq!(parse_scopes("a \"b\""), Err(TextError::Character { ch: '"', position: 3 }));
    assert_eq!(parse_scopes("a\nb"), Err(TextError::Character { ch: '\n', position: 2 }));
}
