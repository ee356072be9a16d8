//! Tokenisation shared by the text tools.

/// One word of a text, with where it ends (a byte offset) so sentence scanning can look at the
/// character that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    /// The word as written.
    pub text: &'a str,
    /// Byte offset just past the word.
    pub end: usize,
}

/// Characters that may join two alphanumeric runs into one word: apostrophes (`don't`,
/// `l’homme`), hyphens (`state-of-the-art`), `.`/`,` (`3.14`, `1,000`, `e.g`, `example.com`)
/// and `@` (an e-mail address is one word, as word processors count it). A joiner only counts
/// when alphanumerics stand on both sides, so trailing punctuation never sticks to a word.
fn is_joiner(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '-' | '.' | ',' | '@')
}

/// Splits `text` into words: maximal runs of alphanumeric characters, possibly joined by
/// [`is_joiner`] characters. Works on any script that Unicode classifies as alphanumeric.
pub fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if !c.is_alphanumeric() {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_alphanumeric() {
                end = i + c.len_utf8();
                chars.next();
            } else if is_joiner(c) {
                // Look one character past the joiner without consuming it.
                let next = text[i + c.len_utf8()..].chars().next();
                // `,` joins digits only: in "red,green" it separates two words.
                let joins = match next {
                    Some(n) if c == ',' => {
                        n.is_ascii_digit() && text[..i].ends_with(|p: char| p.is_ascii_digit())
                    }
                    Some(n) => n.is_alphanumeric(),
                    None => false,
                };
                if !joins {
                    break;
                }
                chars.next();
            } else {
                break;
            }
        }
        out.push(Word {
            text: &text[start..end],
            end,
        });
    }
    out
}

/// The form under which words are counted: lower case, with typographic apostrophes folded to
/// ASCII so "don’t" and "don't" are one word.
pub fn normalize(word: &str) -> String {
    word.to_lowercase().replace('\u{2019}', "'")
}

/// Whether `c` ends a sentence.
pub fn is_terminator(c: char) -> bool {
    matches!(
        c,
        '.' | '!' | '?' | '\u{2026}' | '\u{3002}' | '\u{ff01}' | '\u{ff1f}'
    )
}

/// Abbreviations whose period does not end a sentence (lower case, without the final period).
/// ("etc" is left out: it ends sentences as often as not.)
const ABBREVIATIONS: &[&str] = &[
    "a.m", "approx", "cf", "dr", "e.g", "i.e", "jr", "mr", "mrs", "ms", "mt", "p.m", "prof", "sr", "st",
    "u.s", "vs",
];

/// Whether a period right after `word` belongs to the word rather than ending the sentence:
/// a listed abbreviation, or a single capital letter (an initial, as in "J. R. R. Tolkien").
pub fn is_abbreviation(word: &str) -> bool {
    let lower = word.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
        || (word.chars().count() == 1 && word.chars().all(char::is_uppercase))
}

/// Common English function words, skipped by `word_stats` when `exclude_stopwords` is set.
/// Sorted, for binary search.
pub const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "it's",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Whether a normalised word is a stopword.
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<&str> {
        words(text).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn splits_on_spaces_and_punctuation() {
        assert_eq!(
            texts("Hello, world!  How are you?"),
            ["Hello", "world", "How", "are", "you"]
        );
        assert_eq!(texts(""), Vec::<&str>::new());
        assert_eq!(texts(" ... !!! "), Vec::<&str>::new());
    }

    #[test]
    fn joiners_need_alphanumerics_on_both_sides() {
        assert_eq!(
            texts("don't state-of-the-art 3.14 1,000 e.g. 'quoted' end- -start"),
            [
                "don't",
                "state-of-the-art",
                "3.14",
                "1,000",
                "e.g",
                "quoted",
                "end",
                "start"
            ]
        );
        assert_eq!(texts("red,green"), ["red", "green"]);
        assert_eq!(texts("mail ops@example.com!"), ["mail", "ops@example.com"]);
        assert_eq!(texts("@handle me@"), ["handle", "me"]);
        assert_eq!(texts("l’homme"), ["l’homme"]);
    }

    #[test]
    fn unicode_words() {
        assert_eq!(
            texts("Grüße aus Köln — naïve café"),
            ["Grüße", "aus", "Köln", "naïve", "café"]
        );
        assert_eq!(texts("東京 is big"), ["東京", "is", "big"]);
    }

    #[test]
    fn word_ends_are_byte_offsets() {
        let w = words("é! ok");
        assert_eq!(w[0].end, 2);
        assert_eq!(w[1].end, 6);
    }

    #[test]
    fn stopword_list_is_sorted_and_unique() {
        assert!(STOPWORDS.windows(2).all(|p| p[0] < p[1]));
        assert!(is_stopword("the"));
        assert!(!is_stopword("rust"));
    }

    #[test]
    fn abbreviations() {
        assert!(is_abbreviation("Dr"));
        assert!(is_abbreviation("e.g"));
        assert!(is_abbreviation("J"));
        assert!(!is_abbreviation("end"));
        assert!(!is_abbreviation("7"));
        assert!(!is_abbreviation("a"));
    }
}
