//! Text utilities as a hanzo-node tool.
//!
//! | function | params | result |
//! |---|---|---|
//! | `word_stats` (also `run`) | `{"text", "top"?, "exclude_stopwords"?, "words_per_minute"?}` | counts, averages, reading time, most frequent words |
//! | `slugify` | `{"text", "separator"?, "max_length"?}` | `{"slug"}`: a URL-safe ASCII slug |
//! | `extract_emails` | `{"text"}` | `{"emails", "count"}`: distinct addresses, sorted |
//!
//! Every list in an output has a fixed order (ties broken alphabetically), so equal params
//! give byte-identical outputs: receipts of two runs hash the same.

mod words;

use std::collections::BTreeMap;

use hanzo_tool::tool;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use words::{is_abbreviation, is_stopword, is_terminator, normalize, words};

/// Average silent reading rate of adults for English non-fiction (Brysbaert, 2019, a
/// meta-analysis of 190 studies), used when the caller gives none.
const DEFAULT_WORDS_PER_MINUTE: u32 = 238;
const DEFAULT_TOP: usize = 10;

/// Params of `word_stats`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WordStatsParams {
    /// The text to analyse.
    pub text: String,
    /// How many of the most frequent words to list (default 10).
    #[serde(default)]
    pub top: Option<usize>,
    /// Leave common English function words ("the", "and", ...) out of `top_words`.
    #[serde(default)]
    pub exclude_stopwords: bool,
    /// Reading speed for `reading_time_seconds` (default 238).
    #[serde(default)]
    pub words_per_minute: Option<u32>,
}

/// A word and how often it occurs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct WordCount {
    /// The word, lower-cased.
    pub word: String,
    /// Occurrences in the text.
    pub count: usize,
}

/// Result of `word_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct WordStats {
    /// Number of words.
    pub words: usize,
    /// Number of distinct words, ignoring case.
    pub unique_words: usize,
    /// Number of characters (Unicode scalar values).
    pub characters: usize,
    /// Number of characters that are not whitespace.
    pub characters_excluding_spaces: usize,
    /// Number of sentences: runs of words closed by `.`, `!`, `?` or `…`, or by the end of the
    /// text; periods after common abbreviations and initials do not count.
    pub sentences: usize,
    /// Number of paragraphs: blocks of non-blank lines.
    pub paragraphs: usize,
    /// Mean number of letters and digits per word, to two decimals.
    pub average_word_length: f64,
    /// Mean number of words per sentence, to two decimals.
    pub average_sentence_length: f64,
    /// Time to read the text at `words_per_minute`, rounded up to whole seconds.
    pub reading_time_seconds: u64,
    /// The most frequent words, most frequent first; equal counts in alphabetical order.
    pub top_words: Vec<WordCount>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Counts words, distinct words, characters, sentences and paragraphs, and lists the most
/// frequent words with an estimated reading time.
#[tool]
pub fn word_stats(params: WordStatsParams) -> Result<WordStats, String> {
    let words_per_minute = params.words_per_minute.unwrap_or(DEFAULT_WORDS_PER_MINUTE);
    if words_per_minute == 0 {
        return Err("words_per_minute must be at least 1".to_string());
    }
    let text = params.text.as_str();
    let words = words(text);

    let mut frequencies: BTreeMap<String, usize> = BTreeMap::new();
    let mut letters = 0;
    for word in &words {
        *frequencies.entry(normalize(word.text)).or_default() += 1;
        letters += word.text.chars().filter(|c| c.is_alphanumeric()).count();
    }

    let sentences = count_sentences(text, &words);
    let word_count = words.len();
    let per = |total: usize, n: usize| {
        if n == 0 {
            0.0
        } else {
            round2(total as f64 / n as f64)
        }
    };

    let mut ranked: Vec<WordCount> = frequencies
        .iter()
        .filter(|(word, _)| !(params.exclude_stopwords && is_stopword(word)))
        .map(|(word, &count)| WordCount {
            word: word.clone(),
            count,
        })
        .collect();
    // The map iterates alphabetically and the sort is stable, so ties stay alphabetical.
    ranked.sort_by_key(|w| std::cmp::Reverse(w.count));
    ranked.truncate(params.top.unwrap_or(DEFAULT_TOP));

    Ok(WordStats {
        words: word_count,
        unique_words: frequencies.len(),
        characters: text.chars().count(),
        characters_excluding_spaces: text.chars().filter(|c| !c.is_whitespace()).count(),
        sentences,
        paragraphs: count_paragraphs(text),
        average_word_length: per(letters, word_count),
        average_sentence_length: per(word_count, sentences),
        reading_time_seconds: (word_count as u64 * 60).div_ceil(u64::from(words_per_minute)),
        top_words: ranked,
    })
}

/// A sentence ends after a word followed by a terminator, except a lone period after an
/// abbreviation; the last word always closes one (a final sentence may lack its period).
fn count_sentences(text: &str, words: &[words::Word<'_>]) -> usize {
    let mut sentences = 0;
    for (i, word) in words.iter().enumerate() {
        let gap_end = words
            .get(i + 1)
            .map_or(text.len(), |next| next.end - next.text.len());
        let gap = &text[word.end..gap_end];
        let terminators = gap.chars().filter(|&c| is_terminator(c)).count();
        let abbreviated = terminators == 1 && gap.starts_with('.') && is_abbreviation(word.text);
        if (terminators > 0 && !abbreviated) || i + 1 == words.len() {
            sentences += 1;
        }
    }
    sentences
}

fn count_paragraphs(text: &str) -> usize {
    let mut paragraphs = 0;
    let mut in_paragraph = false;
    for line in text.lines() {
        let blank = line.trim().is_empty();
        if !blank && !in_paragraph {
            paragraphs += 1;
        }
        in_paragraph = !blank;
    }
    paragraphs
}

/// Params of `slugify`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlugifyParams {
    /// The text to turn into a slug, e.g. a title.
    pub text: String,
    /// What goes between words (default "-").
    #[serde(default)]
    pub separator: Option<String>,
    /// Longest slug to return, in bytes; longer slugs are cut at a word boundary.
    #[serde(default)]
    pub max_length: Option<usize>,
}

/// Result of `slugify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Slug {
    /// Lower-case ASCII letters and digits, words joined by the separator.
    pub slug: String,
}

/// ASCII spelling of common accented Latin letters (input already lower-cased).
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Turns text into a URL slug: lower case, accents dropped ("Crème brûlée" → "creme-brulee"),
/// apostrophes removed ("don't" → "dont"), every other run of non-alphanumerics one separator.
#[tool]
pub fn slugify(params: SlugifyParams) -> Result<Slug, String> {
    let separator = params.separator.as_deref().unwrap_or("-");
    if separator.chars().any(|c| c.is_alphanumeric()) {
        return Err("separator must not contain letters or digits".to_string());
    }
    let mut words: Vec<String> = vec![String::new()];
    for c in params.text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            words.last_mut().expect("never empty").push(c);
        } else if let Some(ascii) = transliterate(c) {
            words.last_mut().expect("never empty").push_str(ascii);
        } else if matches!(c, '\'' | '\u{2019}') {
            // Inside a word: "don't" stays one word.
        } else if !words.last().expect("never empty").is_empty() {
            words.push(String::new());
        }
    }
    words.retain(|w| !w.is_empty());

    let mut slug = String::new();
    for word in &words {
        let extra = if slug.is_empty() { 0 } else { separator.len() } + word.len();
        if params.max_length.is_some_and(|max| slug.len() + extra > max) {
            if slug.is_empty() {
                // A single word longer than the limit: cut it rather than return nothing.
                slug = word[..params.max_length.unwrap_or(0)].to_string();
            }
            break;
        }
        if !slug.is_empty() {
            slug.push_str(separator);
        }
        slug.push_str(word);
    }
    Ok(Slug { slug })
}

/// Params of `extract_emails`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractEmailsParams {
    /// The text to search.
    pub text: String,
}

/// Result of `extract_emails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Emails {
    /// Distinct addresses, domains lower-cased, sorted.
    pub emails: Vec<String>,
    /// Number of distinct addresses.
    pub count: usize,
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

/// `name.example.com`: at least two labels of letters, digits and inner hyphens, at most 63
/// bytes each, the last (top-level) alphabetic and at least two letters long.
fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-');
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

/// Finds the e-mail addresses in a text: the common `local@domain.tld` form, with sentence
/// punctuation around an address ignored.
#[tool]
pub fn extract_emails(params: ExtractEmailsParams) -> Emails {
    let text = params.text.as_str();
    let mut found = std::collections::BTreeSet::new();
    for (at, _) in text.match_indices('@') {
        let before = &text[..at];
        let local_start = before
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_local_char(c))
            .last()
            .map_or(at, |(i, _)| i);
        // A leading dot ends a sentence before the address rather than starting it.
        let local = text[local_start..at].trim_start_matches('.');
        let after = &text[at + 1..];
        let domain_len = after
            .char_indices()
            .take_while(|&(_, c)| is_domain_char(c))
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
        // A trailing dot or hyphen is punctuation after the address.
        let domain = after[..domain_len].trim_end_matches(['.', '-']);
        let local_ok =
            !local.is_empty() && local.len() <= 64 && !local.ends_with('.') && !local.contains("..");
        if local_ok && valid_domain(domain) {
            found.insert(format!("{local}@{}", domain.to_ascii_lowercase()));
        }
    }
    let emails: Vec<String> = found.into_iter().collect();
    Emails {
        count: emails.len(),
        emails,
    }
}

hanzo_tool::export!(word_stats, slugify, extract_emails);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn stats(text: &str) -> WordStats {
        word_stats(WordStatsParams {
            text: text.to_string(),
            top: None,
            exclude_stopwords: false,
            words_per_minute: None,
        })
        .unwrap()
    }

    fn slug(text: &str) -> String {
        slugify(SlugifyParams {
            text: text.to_string(),
            separator: None,
            max_length: None,
        })
        .unwrap()
        .slug
    }

    fn emails(text: &str) -> Vec<String> {
        extract_emails(ExtractEmailsParams {
            text: text.to_string(),
        })
        .emails
    }

    #[test]
    fn counts_a_small_text() {
        let s = stats("The cat sat. The cat ran!\n\nA dog? Yes");
        assert_eq!(s.words, 9);
        assert_eq!(s.unique_words, 7);
        assert_eq!(s.sentences, 4);
        assert_eq!(s.paragraphs, 2);
        assert_eq!(s.characters, 37);
        assert_eq!(s.characters_excluding_spaces, 28);
        // 3+3+3+3+3+3+1+3+3 letters over 9 words.
        assert_eq!(s.average_word_length, 2.78);
        assert_eq!(s.average_sentence_length, 2.25);
        assert_eq!(
            s.top_words[..3],
            [
                WordCount {
                    word: "cat".into(),
                    count: 2
                },
                WordCount {
                    word: "the".into(),
                    count: 2
                },
                WordCount {
                    word: "a".into(),
                    count: 1
                },
            ]
        );
    }

    #[test]
    fn ties_are_alphabetical_and_top_truncates() {
        let s = word_stats(WordStatsParams {
            text: "pear apple fig apple pear kiwi".into(),
            top: Some(3),
            exclude_stopwords: false,
            words_per_minute: None,
        })
        .unwrap();
        let order: Vec<(&str, usize)> = s.top_words.iter().map(|w| (w.word.as_str(), w.count)).collect();
        assert_eq!(order, [("apple", 2), ("pear", 2), ("fig", 1)]);
    }

    #[test]
    fn stopwords_can_be_excluded() {
        let s = word_stats(WordStatsParams {
            text: "The rust compiler and the rust borrow checker".into(),
            top: Some(2),
            exclude_stopwords: true,
            words_per_minute: None,
        })
        .unwrap();
        assert_eq!(
            s.top_words[0],
            WordCount {
                word: "rust".into(),
                count: 2
            }
        );
        assert_eq!(s.top_words[1].word, "borrow");
        // Stopwords still count as words.
        assert_eq!(s.words, 8);
    }

    #[test]
    fn sentences_skip_abbreviations_numbers_and_repeated_marks() {
        assert_eq!(
            stats("Dr. Smith met Mr. J. R. Jones at 3.30 p.m. today.").sentences,
            1
        );
        assert_eq!(stats("Wait... what?! Really.").sentences, 3);
        assert_eq!(stats("No terminator at the end").sentences, 1);
        assert_eq!(stats("Bad; isn't it").sentences, 1);
        assert_eq!(stats("").sentences, 0);
        assert_eq!(stats("   \n  ").sentences, 0);
    }

    #[test]
    fn addresses_and_numbers_are_single_words() {
        let s =
            stats("The quick brown fox jumps over the lazy dog. The dog sleeps. Write to ops@example.com!");
        assert_eq!((s.words, s.sentences), (15, 3));
        assert_eq!(stats("Pi is 3.14, not 1,000 or example.com").words, 7);
    }

    #[test]
    fn case_and_apostrophes_fold() {
        let s = stats("Don't DON'T don’t");
        assert_eq!(s.unique_words, 1);
        assert_eq!(
            s.top_words[0],
            WordCount {
                word: "don't".into(),
                count: 3
            }
        );
    }

    #[test]
    fn reading_time_rounds_up() {
        let s = word_stats(WordStatsParams {
            text: "word ".repeat(250),
            top: Some(0),
            exclude_stopwords: false,
            words_per_minute: Some(200),
        })
        .unwrap();
        assert_eq!(s.reading_time_seconds, 75);
        assert!(s.top_words.is_empty());
        assert_eq!(stats("one").reading_time_seconds, 1);
        assert_eq!(stats("").reading_time_seconds, 0);
        let zero = WordStatsParams {
            text: "x".into(),
            top: None,
            exclude_stopwords: false,
            words_per_minute: Some(0),
        };
        assert!(word_stats(zero).is_err());
    }

    #[test]
    fn empty_text_has_zero_averages() {
        let s = stats("");
        assert_eq!((s.words, s.unique_words, s.paragraphs), (0, 0, 0));
        assert_eq!(s.average_word_length, 0.0);
        assert_eq!(s.average_sentence_length, 0.0);
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Hello, World!"), "hello-world");
        assert_eq!(slug("  Crème Brûlée: a how-to  "), "creme-brulee-a-how-to");
        assert_eq!(slug("Don't stop me now"), "dont-stop-me-now");
        assert_eq!(
            slug("Straße & Œuvre — 2024 edition"),
            "strasse-oeuvre-2024-edition"
        );
        assert_eq!(slug("東京 Tokyo"), "tokyo");
        assert_eq!(slug("!!!"), "");
    }

    #[test]
    fn slug_options() {
        let s = |text: &str, separator: Option<&str>, max_length: Option<usize>| {
            slugify(SlugifyParams {
                text: text.into(),
                separator: separator.map(str::to_string),
                max_length,
            })
        };
        assert_eq!(s("a b c", Some("_"), None).unwrap().slug, "a_b_c");
        assert_eq!(s("one two three", None, Some(9)).unwrap().slug, "one-two");
        assert_eq!(s("one two three", None, Some(7)).unwrap().slug, "one-two");
        assert_eq!(s("incomprehensible", None, Some(6)).unwrap().slug, "incomp");
        assert!(s("x", Some("a"), None).is_err());
    }

    #[test]
    fn finds_emails_in_prose() {
        let text = "Write to Alice.Smith+news@Example.COM, or bob@mail.example.org. \
                    Not: @nobody, me@localhost, x@y.z, a..b@c.com; again: bob@mail.example.org!";
        assert_eq!(
            emails(text),
            ["Alice.Smith+news@example.com", "bob@mail.example.org"]
        );
        assert_eq!(emails("(carol@dev.example.io)"), ["carol@dev.example.io"]);
        assert_eq!(emails("a@b@c.example.net"), ["b@c.example.net"]);
        assert_eq!(emails("mail .dave@example.com."), ["dave@example.com"]);
        assert!(emails("no addresses here").is_empty());
    }

    #[test]
    fn dispatch_by_name_and_default() {
        let tools = hanzo_tools();
        let call = |name: Option<&str>, params: Value| {
            hanzo_tool::select(tools, name).and_then(|t| t.call(params.to_string().as_bytes()))
        };
        let by_default = call(None, json!({"text": "hello world"})).unwrap();
        assert_eq!(by_default["words"], 2);
        assert_eq!(
            call(Some("run"), json!({"text": "hello world"})).unwrap(),
            by_default
        );
        assert_eq!(
            call(Some("slugify"), json!({"text": "Hello World"})).unwrap(),
            json!({"slug": "hello-world"})
        );
        let err = call(Some("word_stats"), json!({"txt": "typo"})).unwrap_err();
        assert!(err.starts_with("invalid params: unknown field `txt`"), "{err}");
    }
}
