use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn name(n: &str) -> Host {
    Host::Name(n.into())
}

fn auth(user: Option<&[u8]>, password: &[u8]) -> Option<Auth> {
    Some(Auth {
        username: user.map(<[u8]>::to_vec),
        password: Password::new(password),
    })
}

#[test]
fn accepted_urls() {
    let table: &[(&str, Host, u16, u32, Option<Auth>)] = &[
        ("redis://localhost", name("localhost"), 6379, 0, None),
        ("redis://localhost/", name("localhost"), 6379, 0, None),
        (
            "REDIS://Cache.Example.COM:6380/3",
            name("cache.example.com"),
            6380,
            3,
            None,
        ),
        (
            "redis://10.0.0.7:/",
            Host::Ip(Ipv4Addr::new(10, 0, 0, 7).into()),
            6379,
            0,
            None,
        ),
        (
            "redis://[::1]",
            Host::Ip(Ipv6Addr::LOCALHOST.into()),
            6379,
            0,
            None,
        ),
        (
            "redis://[::1]:7000/15",
            Host::Ip(Ipv6Addr::LOCALHOST.into()),
            7000,
            15,
            None,
        ),
        (
            "redis://:secret@h",
            name("h"),
            6379,
            0,
            auth(None, b"secret"),
        ),
        (
            "redis://app:secret@h:1/2",
            name("h"),
            1,
            2,
            auth(Some(b"app"), b"secret"),
        ),
        // Percent-decoding: any byte, the delimiters included; a raw `@` is tolerated.
        (
            "redis://:p%40ss%2F%3F%23%3a%25@h",
            name("h"),
            6379,
            0,
            auth(None, b"p@ss/?#:%"),
        ),
        (
            "redis://:%00%ff@h",
            name("h"),
            6379,
            0,
            auth(None, b"\0\xff"),
        ),
        ("redis://:p@ss@h", name("h"), 6379, 0, auth(None, b"p@ss")),
        (
            "redis://u%3Ax:p:q@h",
            name("h"),
            6379,
            0,
            auth(Some(b"u:x"), b"p:q"),
        ),
        (
            "redis://h/2147483647",
            name("h"),
            6379,
            i32::MAX as u32,
            None,
        ),
    ];
    for (text, host, port, db, auth) in table {
        let url = RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            url,
            RedisUrl {
                host: host.clone(),
                port: *port,
                db: *db,
                auth: auth.clone()
            },
            "{text}"
        );
        assert_eq!(text.parse::<RedisUrl>().as_ref(), Ok(&url));
    }
}

#[test]
fn refused_urls() {
    use RedisUrlError::*;
    let long = format!("redis://{}", "a".repeat(MAX_URL_LEN));
    let table: &[(&str, RedisUrlError)] = &[
        (&long, TooLong),
        ("redis://h st", BadChar(9)),
        ("redis://hé", BadChar(9)),
        ("localhost:6379", MissingScheme),
        ("rediss://h", TlsUnsupported),
        ("REDISS://:pw@h:6380", TlsUnsupported),
        ("unix:///tmp/redis.sock", UnsupportedScheme),
        ("http://h", UnsupportedScheme),
        ("redis://h?db=1", QueryUnsupported),
        ("redis://h/1?protocol=3", QueryUnsupported),
        ("redis://h#x", Fragment),
        ("redis://:pa/ss@h", UserInfoDelimiter),
        ("redis://:pa?ss@h", UserInfoDelimiter),
        ("redis://user@h", MissingPassword),
        ("redis://:@h", EmptyPassword),
        ("redis://user:@h", EmptyPassword),
        ("redis://:a%2@h", BadPercent),
        ("redis://:a%zz@h", BadPercent),
        ("redis://:a%@h", BadPercent),
        ("redis://", BadHost(UrlError::EmptyHost)),
        ("redis://:pw@:6379", BadHost(UrlError::EmptyHost)),
        ("redis://[::1", BadHost(UrlError::BadIpv6)),
        ("redis://[::1]x", BadHost(UrlError::BadIpv6)),
        ("redis://[fe80::1%25eth0]", BadHost(UrlError::BadIpv6)),
        ("redis://127.1", BadHost(UrlError::BadIpv4)),
        (
            "redis://a_b",
            BadHost(UrlError::BadHostName(
                "label with a character other than a letter, digit or hyphen",
            )),
        ),
        ("redis://h:0", BadPort),
        ("redis://h:65536", BadPort),
        ("redis://h:+1", BadPort),
        ("redis://h:1:2", BadPort),
        ("redis://h/x", BadDb),
        ("redis://h/-1", BadDb),
        ("redis://h/1/2", BadDb),
        ("redis://h/2147483648", BadDb),
        ("redis://h//", BadDb),
    ];
    for (text, error) in table {
        let got = RedisUrl::parse(text);
        match (&got, error) {
            // The webhook parser's own wording for a bad label is its business.
            (Err(BadHost(UrlError::BadHostName(_))), BadHost(UrlError::BadHostName(_))) => {}
            _ => assert_eq!(got.as_ref(), Err(error), "{text}"),
        }
        assert!(!error.to_string().is_empty());
    }
    assert!(TlsUnsupported
        .to_string()
        .contains("TLS to Redis is not supported"));
}

#[test]
fn display_never_shows_the_password() {
    let url = RedisUrl::parse("redis://app%2Fx:hunter2@Cache:6380/4").unwrap();
    assert_eq!(url.to_string(), "redis://app%2Fx:***@cache:6380/4");
    let debug = format!("{url:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"), "{debug}");
    assert_eq!(url.auth.as_ref().unwrap().password.expose(), b"hunter2");
    let url = RedisUrl::parse("redis://:hunter2@[::1]").unwrap();
    assert_eq!(url.to_string(), "redis://:***@[::1]:6379/0");
    // Without credentials the normalized form parses back to the same URL.
    for text in [
        "redis://h",
        "redis://[2001:db8::1]:1/9",
        "redis://10.1.2.3:6380/",
    ] {
        let url = RedisUrl::parse(text).unwrap();
        assert_eq!(RedisUrl::parse(&url.to_string()), Ok(url));
    }
}

#[test]
fn socket_addr_for_ip_hosts() {
    let url = RedisUrl::parse("redis://127.0.0.1:7000").unwrap();
    assert_eq!(url.socket_addr(), Some("127.0.0.1:7000".parse().unwrap()));
    assert_eq!(RedisUrl::parse("redis://h").unwrap().socket_addr(), None);
}
