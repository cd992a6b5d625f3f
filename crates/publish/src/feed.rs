//! `feed.atom` (RFC 4287): the current news items, for feed readers; `news.json`: every
//! published item, current and archived.

use crate::digest::Digest;
use atom_syndication::{Content, Entry, Feed, Link, Person, Text};
use chrono::FixedOffset;

/// The feed's and entries' ids: `tag:` URIs (RFC 4151) when the site has no public address,
/// so they stay the same wherever the site is served. The tagging authority is the site's
/// contact address when it has one, so two cities' feeds do not share ids.
fn id(digest: &Digest, path: &str) -> String {
    match &digest.site.base_url {
        Some(base) if base.starts_with("http://") || base.starts_with("https://") => {
            format!("{}/{path}", base.trim_end_matches('/'))
        }
        _ => {
            let authority = digest
                .site
                .contact_email
                .as_deref()
                .filter(|e| is_plain_address(e))
                .unwrap_or("goalpost.invalid");
            format!("tag:{authority},2024:{path}")
        }
    }
}

/// An address usable as a tag authority: one `@`, and only characters a URI allows there.
fn is_plain_address(email: &str) -> bool {
    email.matches('@').count() == 1
        && !email.starts_with('@')
        && !email.ends_with('@')
        && email
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.-_+".contains(c))
}

use crate::text::printable as clean;

pub(crate) fn atom(digest: &Digest) -> String {
    let utc = FixedOffset::east_opt(0).expect("zero offset");
    let current: Vec<&crate::digest::NewsItem> =
        digest.news.iter().filter(|n| !n.archived).collect();
    let updated = current
        .iter()
        .map(|n| n.posted)
        .max()
        .unwrap_or(digest.generated_at);
    let author = Person {
        name: clean(
            digest
                .site
                .organization
                .as_deref()
                .unwrap_or(&digest.site.title),
        ),
        ..Default::default()
    };
    let entries: Vec<Entry> = current
        .iter()
        .map(|n| {
            let page = format!("news/{}.html", n.id);
            Entry {
                id: id(digest, &page),
                title: Text::plain(clean(&n.title)),
                updated: n.posted.with_timezone(&utc),
                published: Some(n.posted.with_timezone(&utc)),
                authors: vec![author.clone()],
                categories: vec![atom_syndication::Category {
                    term: clean(&n.category),
                    ..Default::default()
                }],
                links: vec![Link {
                    href: match &digest.site.base_url {
                        Some(_) => id(digest, &page),
                        None => page.clone(),
                    },
                    rel: "alternate".into(),
                    mime_type: Some("text/html".into()),
                    ..Default::default()
                }],
                summary: Some(Text::plain(clean(&n.body))),
                content: Some(Content {
                    value: Some(clean(&n.body)),
                    content_type: Some("text".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    let mut links = vec![Link {
        href: id(digest, "feed.atom"),
        rel: "self".into(),
        mime_type: Some("application/atom+xml".into()),
        ..Default::default()
    }];
    if digest.site.base_url.is_none() {
        links.clear();
    }
    let feed = Feed {
        id: id(digest, "feed.atom"),
        title: Text::plain(format!("{}: news", clean(&digest.site.title))),
        updated: updated.with_timezone(&utc),
        authors: vec![author],
        links,
        entries,
        ..Default::default()
    };
    feed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{SiteInfo, Summary};
    use chrono::TimeZone;

    fn site(base_url: Option<&str>, contact_email: Option<&str>) -> Digest {
        Digest {
            schema_version: crate::DIGEST_SCHEMA_VERSION,
            version: "v1".into(),
            generated_at: chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            site: SiteInfo {
                title: "City".into(),
                base_url: base_url.map(Into::into),
                contact_email: contact_email.map(Into::into),
                ..Default::default()
            },
            summary: Summary::default(),
            pipelines: vec![],
            news: vec![],
        }
    }

    #[test]
    fn ids_are_the_public_address_or_a_tag_of_the_sites_own() {
        let page = "news/a.b.html";
        assert_eq!(
            id(&site(Some("https://data.example.gov/"), None), page),
            "https://data.example.gov/news/a.b.html"
        );
        assert_eq!(
            id(&site(None, Some("open.data@example.gov")), page),
            "tag:open.data@example.gov,2024:news/a.b.html"
        );
        // An address a URI cannot carry is not used as the authority.
        for odd in ["a b@example.gov", "@example.gov", "x@y@z", "x<y>@z"] {
            assert_eq!(
                id(&site(None, Some(odd)), page),
                "tag:goalpost.invalid,2024:news/a.b.html",
                "{odd}"
            );
        }
        assert_eq!(
            id(&site(Some("ftp://x"), None), page),
            "tag:goalpost.invalid,2024:news/a.b.html"
        );
    }
}
