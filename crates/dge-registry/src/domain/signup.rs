//! The sign-up form and its rules.
//!
//! Every rule gives a French sentence for the page and a stable code for gRPC.
//! The rules that need the database (organisation exists, login free) are checked
//! by the service; this module holds the rest and does no I/O.

use dge_core::{Secret, Violations};
use unicode_normalization::UnicodeNormalization;

pub use super::password::{PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, PASSWORD_RULES};
use super::password::{PasswordContext, check_new_password};

/// Login length bounds.
pub const LOGIN_CHARS: std::ops::RangeInclusive<usize> = 3..=32;
pub(crate) const NAME_MAX: usize = 100;
/// Stacked marks (Mn, Me) allowed in a row on one letter of a name, after NFC:
/// French and most European letters are precomposed and keep none; some keep one or
/// two (Lithuanian i + U+0307 + U+0303, Yoruba ẹ + U+0301), pointed Hebrew up to three.
/// Spacing marks (Mc, the vowel signs of Burmese or Hindi) sit beside their letter,
/// not on it, and are not counted.
pub const NAME_COMBINING_RUN_MAX: usize = 3;
pub(crate) const FUNCTION_MAX: usize = 150;
const DESCRIPTION_MAX: usize = 2000;
const ORGANISATION_MAX: usize = 200;

/// Logins nobody may take: they could pass for the portal's staff or a system.
const RESERVED_LOGINS: &[&str] = &[
    "admin",
    "administrateur",
    "administrator",
    "root",
    "system",
    "support",
    "datagrandest",
    "dge",
    "postmaster",
    "webmaster",
    "security",
    "noreply",
    "no-reply",
    "proconnect",
];

/// A sign-up as typed (pages) or sent (gRPC).
#[derive(Debug, Clone, Default)]
pub struct SignUpForm {
    /// Prénom.
    pub given_name: String,
    /// Nom.
    pub family_name: String,
    /// Courriel.
    pub email: String,
    /// Téléphone.
    pub phone: String,
    /// Chosen organisation id, empty when proposing one.
    pub organisation_id: String,
    /// Name of an organisation missing from the list.
    pub proposed_organisation: String,
    /// Fonction.
    pub function: String,
    /// Description: the person's request.
    pub description: String,
    /// Login.
    pub login: String,
    /// Mot de passe.
    pub password: Secret<String>,
    /// Confirmation du mot de passe.
    pub password_confirmation: Secret<String>,
}

/// A sign-up whose fields follow every rule, normalised.
#[derive(Debug, Clone)]
pub struct ValidSignUp {
    /// NFC, trimmed.
    pub given_name: String,
    /// NFC, trimmed.
    pub family_name: String,
    /// Trimmed, domain lower-cased.
    pub email: String,
    /// Lower-cased, for uniqueness.
    pub email_key: String,
    /// E.164.
    pub phone: String,
    /// Either an organisation id …
    pub organisation_id: Option<String>,
    /// … or the name of a proposed one.
    pub proposed_organisation: Option<String>,
    /// NFC, trimmed.
    pub function: String,
    /// NFC, trimmed.
    pub description: String,
    /// As typed, trimmed.
    pub login: String,
    /// Lower-cased, for uniqueness.
    pub login_key: String,
    /// The password, NFKC-normalised (NIST SP 800-63B §5.1.1.2).
    pub password: Secret<String>,
}

/// Unicode NFC, trimmed.
#[must_use]
pub fn clean_text(s: &str) -> String {
    s.nfc().collect::<String>().trim().to_owned()
}

/// Characters that break lines, reorder text or hide in it without being Unicode
/// controls (Cc): the line and paragraph separators, and every format character
/// (Cf: bidirectional overrides and isolates, zero-width space and joiners, word
/// joiner, BOM, soft hyphen…), which make `Région\u{200B} Grand Est` look like the
/// trusted `Région Grand Est`.
fn is_invisible_format(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // Unassigned code points (among them the reserved default ignorables U+2065,
    // U+FFF0…, U+E0080…, which render as nothing) and private-use ones (a font's
    // own glyphs, or none) have no place in a name either.
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::Unassigned
            | GeneralCategory::PrivateUse
    ) || is_blank_letter_or_ignorable(c)
}

/// Characters outside the format category that show nothing, or nothing but a
/// blank, yet count as letters or marks: the Hangul fillers, the blank Braille
/// pattern, the combining grapheme joiner and the variation selectors (default
/// ignorable code points, Unicode's DerivedCoreProperties). `Data\u{3164}Hub` must
/// not pass for `DataHub`.
fn is_blank_letter_or_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Whether `s` holds a control (Cc) or an invisible format character: refused in
/// every person and organisation text.
#[must_use]
pub fn has_hidden_characters(s: &str) -> bool {
    has_control(s, false)
}

/// [`has_hidden_characters`] for a text of several lines (a reason, a description):
/// line breaks and tabs are allowed.
#[must_use]
pub fn has_hidden_characters_in_lines(s: &str) -> bool {
    has_control(s, true)
}

fn has_control(s: &str, allow_newlines: bool) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        (c.is_control() && !(allow_newlines && (c == '\n' || c == '\r' || c == '\t')))
            || (is_invisible_format(c) && !is_joiner_in_context(&chars, i))
    })
}

/// Whether `chars[i]` is a zero-width non-joiner or joiner where a script needs it,
/// as IDNA allows them (RFC 5892, appendix A.1 and A.2): after a virama (Devanagari,
/// Bengali…), or, for the non-joiner, where it stops two letters from joining (the
/// Persian `\u{200C}` of `Mohammad\u{200C}reza` written in Arabic letters): a letter
/// that joins on its left before it and one that joins on its right after it, marks
/// aside (Unicode joining types). Anywhere else it only hides.
fn is_joiner_in_context(chars: &[char], i: usize) -> bool {
    use unicode_joining_type::{JoiningType, get_joining_type};
    let c = chars[i];
    if c != '\u{200C}' && c != '\u{200D}' {
        return false;
    }
    let Some(&before) = i.checked_sub(1).and_then(|j| chars.get(j)) else {
        return false;
    };
    let Some(&after) = chars.get(i + 1) else {
        return false;
    };
    if unicode_normalization::char::canonical_combining_class(before) == 9 {
        return after.is_alphabetic();
    }
    let joining = |ch: &char| {
        let t = get_joining_type(*ch);
        (t != JoiningType::Transparent).then_some(t)
    };
    let left = chars[..i].iter().rev().find_map(joining);
    let right = chars[i + 1..].iter().find_map(joining);
    c == '\u{200C}'
        && matches!(
            left,
            Some(JoiningType::LeftJoining | JoiningType::DualJoining)
        )
        && matches!(
            right,
            Some(JoiningType::RightJoining | JoiningType::DualJoining)
        )
}

pub(crate) fn text_field(
    v: &mut Violations,
    field: &'static str,
    raw: &str,
    required: Option<&str>,
    max: usize,
    multiline: bool,
) -> String {
    let value = clean_text(raw);
    if value.is_empty() {
        if let Some(message) = required {
            v.add(field, "required", message);
        }
    } else if value.chars().count() > max {
        v.add(
            field,
            "too_long",
            format!("Ce champ ne peut pas dépasser {max} caractères."),
        );
    } else if has_control(&value, multiline) {
        v.add(
            field,
            "control_characters",
            "Ce champ contient des caractères non autorisés.",
        );
    }
    value
}

/// Whether `s` piles more than [`NAME_COMBINING_RUN_MAX`] combining marks on one
/// letter ("Zalgo" text, which spills over the lines above and below wherever the
/// name is shown): refused in person, organisation and client names and labels.
#[must_use]
pub fn has_stacked_marks(s: &str) -> bool {
    // Counted on the decomposed form, so that a precomposed letter does not carry
    // marks for free: `é` is one, Vietnamese `ễ` two, `é` + 3 × U+0301 four.
    longest_combining_run(&s.nfd().collect::<String>()) > NAME_COMBINING_RUN_MAX
}

/// The longest run of stacked marks (Mn, Me) in `s`; a spacing mark (Mc) between
/// them neither counts nor breaks the run.
fn longest_combining_run(s: &str) -> usize {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let mut run = 0;
    let mut longest = 0;
    for c in s.chars() {
        run = match c.general_category() {
            GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark => run + 1,
            GeneralCategory::SpacingMark => run,
            _ => 0,
        };
        longest = longest.max(run);
    }
    longest
}

/// `s` with its styled and compatibility letters written plainly (Unicode NFKC, as
/// PRECIS does for nicknames, RFC 8266): `𝐄𝐯𝐢𝐥` and the full-width `Ｊｅａｎ` typed
/// with a Japanese input method become `Evil` and `Jean`, ligatures their letters,
/// a no-break space a space; every rule then reads plain letters, and a name or an
/// organisation cannot pass for another one by its style alone.
#[must_use]
pub fn plain_letters(s: &str) -> String {
    // A spacing acute typed for an apostrophe (`O´Neil`) would become a space and a
    // floating accent.
    s.chars()
        .map(|c| if c == '\u{00B4}' { '\u{2019}' } else { c })
        .nfkc()
        .collect()
}

/// `s` with one space between words and none around them: sixty spaces in a greeting
/// push what follows out of sight, and two in an organisation's name make a second
/// one. Only spaces: a line break or a tab is left for the rules to refuse.
#[must_use]
pub fn single_spaces(s: &str) -> String {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The words of `s`: runs of letters, digits and marks, one space between them.
fn words_of(s: &str) -> String {
    s.split(|c: char| !(c.is_alphanumeric() || is_mark(c)))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keys two organisation names that read alike share, compared key by key. Each
/// reads the name written plainly ([`plain_letters`]), as its words only (runs of
/// letters, digits and marks: any dash, apostrophe, dot or other sign between them
/// reads as one space) and without the accents of Latin, Greek and Cyrillic letters
/// (`REGION` is how capitals often write `Région`). The first key ignores case; the
/// second keeps it and reads lookalikes as their model (`VilIe` with a capital i, a
/// dotless `ı`, `ΑΤΜΟ` in Greek letters); the third does both after lower-casing
/// (`Regi0n`, `EUROMÉTR0POLE`). Lookalikes are read from UTS #39's skeleton for every
/// character but the ASCII letters, of which only the capital `I` reads as `l`, among
/// lower-case letters: `rn` against `m` or `I` against `L` tell real names apart
/// (`Ornes` and `Omes`, `CIAS` and `CLAS`); digits read as letters only in a word
/// with letters (`Paris 11` is not `Paris II`).
#[must_use]
pub fn organisation_name_keys(name: &str) -> [String; 3] {
    let unaccented: String = plain_letters(name)
        .nfd()
        .filter(|c| !('\u{0300}'..='\u{036F}').contains(c))
        .collect();
    let words = words_of(&unaccented);
    // A word read as what it looks like. Digits stand for letters only in a word with
    // letters (`ATM0`, `Vi1le`; `Paris 11` is not `Paris II`), and a capital `I` for
    // an `l` only among lower-case letters (`VilIe`; `CIAS` and `II` stay).
    let look = |word: &str| {
        let has_letter = word.chars().any(char::is_alphabetic);
        let has_lower = word.chars().any(char::is_lowercase);
        let mut out = String::with_capacity(word.len());
        for c in word.chars() {
            match c {
                'I' if has_lower => out.push('l'),
                c if c.is_ascii_alphabetic() => out.push(c),
                c if c.is_ascii_digit() && !has_letter => out.push(c),
                c => out.extend(unicode_security::skeleton(c.encode_utf8(&mut [0_u8; 4]))),
            }
        }
        out
    };
    // What a lookalike reads as may be a sign (`ː` as `:`): words again.
    let looked = |words: &str| words_of(&words.split(' ').map(look).collect::<Vec<_>>().join(" "));
    let lower = words.to_lowercase();
    let both = looked(&lower).to_lowercase();
    [lower, looked(&words), both]
}

/// Whether two names' [`organisation_name_keys`] meet: one key of one equals the same
/// key of the other.
#[must_use]
pub fn organisation_keys_alike(a: &[String; 3], b: &[String; 3]) -> bool {
    a.iter().zip(b).any(|(x, y)| !x.is_empty() && x == y)
}

/// Whether two organisation names read alike ([`organisation_name_keys`]).
#[must_use]
pub fn organisation_names_alike(a: &str, b: &str) -> bool {
    organisation_keys_alike(&organisation_name_keys(a), &organisation_name_keys(b))
}

/// `s` without the zero-width non-joiners that sit between two letters of a joining
/// script (Arabic, Syriac, N'Ko, Mongolian) which would not join anyway: after a dal,
/// in the common spelling of `محمد‌رضا`, it changes nothing on screen, so it is
/// dropped rather than refused. Anywhere else the name rules decide.
fn without_needless_non_joiners(s: &str) -> String {
    use unicode_script::{Script, UnicodeScript};
    let chars: Vec<char> = s.chars().collect();
    let joining_script = |c: Option<&char>| {
        c.is_some_and(|c| {
            c.is_alphabetic()
                && matches!(
                    c.script(),
                    Script::Arabic | Script::Syriac | Script::Nko | Script::Mongolian
                )
        })
    };
    chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| {
            !(c == '\u{200C}'
                && i > 0
                && joining_script(chars.get(i - 1))
                && joining_script(chars.get(i + 1))
                && !is_joiner_in_context(&chars, i))
        })
        .map(|(_, &c)| c)
        .collect()
}

/// A required person name: [`text_field`] on [`plain_letters`], and no pile of combining marks, which
/// ("Zalgo" text) spills over the lines above and below the name wherever it is shown.
fn name_field(v: &mut Violations, field: &'static str, raw: &str, required: &str) -> String {
    let value = text_field(
        v,
        field,
        &without_needless_non_joiners(&plain_letters(raw)),
        Some(required),
        NAME_MAX,
        false,
    );
    // One space between words: sixty spaces in a greeting push what follows out of
    // sight.
    let value = single_spaces(&value);
    if v.message_for(field).is_none() && has_stacked_marks(&value) {
        v.add(
            field,
            "combining_marks",
            format!(
                "Trop d'accents ou de signes superposés sur une même lettre \
                 ({NAME_COMBINING_RUN_MAX} au plus)."
            ),
        );
    } else if v.message_for(field).is_none() && !is_plain_name(&value) {
        v.add(
            field,
            "characters",
            "Un nom s'écrit avec des lettres, et au besoin des espaces, des apostrophes, \
             des traits d'union ou des points (« J.-P. »).",
        );
    }
    value
}

/// Whether `name` reads as a person's name: letters of any script with their
/// accents, spaces, apostrophes, hyphens and dashes, a middle dot between letters
/// (`Gal·la`), and a dot only after an initial (`J.-P.`, `J.P.`, `J. Dupont`). Names
/// go into emails sent to addresses nobody has confirmed yet: « Bonjour Votre compte
/// est suspendu, allez sur https://… » must not be something a stranger can write
/// there, nor `evil.example` or `J.com`, which mail programs turn into links.
/// Each word is of one script (UTS #39 mixed-script detection, Japanese and Korean
/// mixes allowed): `evilꓸexample`, where a Lisu letter stands for the dot, is not.
// Not caught: a whole word in another script's lookalikes (`раураl` in Cyrillic);
// names of any script are welcome, so only a confusables check against the
// portal's own words could, and none is kept.
fn is_plain_name(name: &str) -> bool {
    is_plain_name_text(name) && !has_mixed_script_words(name)
}

/// Whether a word of `s` (a run of letters and marks) mixes scripts (UTS #39,
/// Japanese and Korean mixes allowed): `Ville de Nanсy` with a Cyrillic `с` must not
/// pass for `Ville de Nancy` in an organisation's or a person's name.
#[must_use]
pub fn has_mixed_script_words(s: &str) -> bool {
    !s.split(|c: char| !(c.is_alphabetic() || is_mark(c) || c == '\u{200C}' || c == '\u{200D}'))
        .all(unicode_security::MixedScript::is_single_script)
}

fn is_latin(c: char) -> bool {
    use unicode_script::{Script, UnicodeScript};
    c.script() == Script::Latin
}

/// Whether `c` belongs to a script of its own, not to those shared by all (Common:
/// the modifier letters `ʹ` and `ː`; Inherited).
fn has_own_script(c: char) -> bool {
    use unicode_script::{Script, UnicodeScript};
    !matches!(c.script(), Script::Common | Script::Inherited)
}

fn same_script(a: char, b: char) -> bool {
    use unicode_script::UnicodeScript;
    a.is_alphabetic() && a.script() == b.script()
}

/// Whether the letter `c` is confusable with a dot, a slash, a colon or an at sign
/// (its UTS #39 skeleton is that one character).
fn looks_like_punctuation(c: char) -> bool {
    let mut buf = [0_u8; 4];
    let mut skeleton = unicode_security::confusable_detection::skeleton(c.encode_utf8(&mut buf));
    matches!(
        (skeleton.next(), skeleton.next()),
        (Some('.' | '/' | ':' | '@' | '\\' | '\u{00B7}' | '|'), None)
    )
}

/// Small capitals (`ᴇᴠɪʟ`): phonetic letters no name is written with, which only
/// style a word past the rules for plain letters (NFKC leaves them as they are).
fn is_small_capital(c: char) -> bool {
    matches!(
        c,
        '\u{0262}'
            | '\u{026A}'
            | '\u{0274}'
            | '\u{0276}'
            | '\u{0280}'
            | '\u{0281}'
            | '\u{028F}'
            | '\u{0299}'
            | '\u{029B}'
            | '\u{029C}'
            | '\u{029F}'
            | '\u{1D00}'
            ..='\u{1D2B}'
                | '\u{1D7B}'
                | '\u{1D7E}'
                | '\u{2C7B}'
                | '\u{A730}'
                | '\u{A731}'
                | '\u{A776}'
                | '\u{A7AE}'
                | '\u{A7AF}'
                | '\u{A7FA}'
                | '\u{AB46}'
                | '\u{AB65}'
                | '\u{1DF02}'
                | '\u{1DF04}'
                | '\u{1DF10}'
    )
}

/// Marks that style rather than spell: strokes and slashes drawn through a letter
/// (combining class 1, overlay), circles and boxes around it (enclosing marks), lines
/// above or below it and the marks that span two letters (`J̶e̶a̶n̶`, `J⃝`, `J̲e̲a̲n̲`,
/// `J͟e͟a͟n͟`), the technical marks of the diacritics block and its supplements, the
/// half marks, the marks made for symbols, and the Vedic stress signs. The marks of
/// transliteration (macron, ring, breve or tilde below, Yoruba's vertical line,
/// Greek breathings) stay.
fn is_styling_mark(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    use unicode_security::GeneralSecurityProfile as _;
    use unicode_security::general_security_profile::IdentifierType;
    let transliteration = matches!(
        c,
        '\u{030F}'
            | '\u{0311}'
            | '\u{0313}'
            | '\u{0314}'
            | '\u{0324}'
            | '\u{0325}'
            | '\u{0329}'
            | '\u{032D}'
            | '\u{032E}'
            | '\u{0330}'
            | '\u{0342}'
    );
    unicode_normalization::char::canonical_combining_class(c) == 1
        || c.general_category() == GeneralCategory::EnclosingMark
        || matches!(
            c,
            '\u{0305}'
                | '\u{0332}'
                | '\u{0333}'
                | '\u{033F}'
                | '\u{0951}'..='\u{0954}'
                | '\u{1AB0}'..='\u{1AFF}'
                | '\u{1DC0}'..='\u{1DFF}'
                | '\u{20D0}'..='\u{20FF}'
                | '\u{FE20}'..='\u{FE2F}'
        )
        || (('\u{0300}'..='\u{036F}').contains(&c)
            && c.identifier_type() == Some(IdentifierType::Technical)
            && !transliteration)
}

/// Letters that are pictures of letters (`🅴`, negative squared and circled capitals:
/// symbols Unicode counts as alphabetic, which no identifier takes, UTS #39 `Not_XID`).
fn is_symbol_letter(c: char) -> bool {
    use unicode_security::GeneralSecurityProfile as _;
    use unicode_security::general_security_profile::IdentifierType;
    c.is_alphabetic() && c.identifier_type() == Some(IdentifierType::Not_XID)
}

/// Whether `s` styles its letters rather than spelling them: small capitals, symbol
/// letters, styling marks (after [`plain_letters`], which writes the other styles
/// plainly). Refused in person and organisation names alike.
#[must_use]
pub fn has_styled_letters(s: &str) -> bool {
    s.chars().any(|c| {
        is_small_capital(c)
            || is_symbol_letter(c)
            || ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
            || (is_mark(c) && is_styling_mark(c))
    })
}

fn is_mark(c: char) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
    c.general_category_group() == GeneralCategoryGroup::Mark
}

fn is_plain_name_text(name: &str) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
    let chars: Vec<char> = name.chars().collect();
    let letter = |c: char| c.is_alphabetic();
    let mark = |c: char| c.general_category_group() == GeneralCategoryGroup::Mark;
    // The letter before `i` (marks aside) starts a word: an initial.
    let initial_before = |i: usize| {
        let mut j = i;
        while j > 0 && mark(chars[j - 1]) {
            j -= 1;
        }
        j > 0 && letter(chars[j - 1]) && (j == 1 || !(letter(chars[j - 2]) || mark(chars[j - 2])))
    };
    // After an initial's dot: the end, a space, a hyphen, or another initial.
    let fine_after_dot = |i: usize| match chars.get(i + 1) {
        None => true,
        Some(' ' | '-' | '\u{2010}' | '\u{2011}') => true,
        Some(&c) if letter(c) => {
            let mut k = i + 2;
            while chars.get(k).is_some_and(|&c| mark(c)) {
                k += 1;
            }
            chars.get(k) == Some(&'.')
        }
        _ => false,
    };
    let between_letters = |i: usize| {
        i > 0
            && (letter(chars[i - 1]) || mark(chars[i - 1]))
            && chars.get(i + 1).is_some_and(|&c| letter(c))
    };
    // A short word before the dot (`Jr.`, `St.`, `Ste.`), then the end or a space.
    let abbreviation_before = |i: usize| {
        let mut j = i;
        while j > 0 && (letter(chars[j - 1]) || mark(chars[j - 1])) {
            j -= 1;
        }
        let word = chars[j..i].iter().filter(|&&c| letter(c)).count();
        (2..=3).contains(&word) && matches!(chars.get(i + 1), None | Some(' '))
    };
    // Both neighbours letters, and neither Latin: the separator of transliterated
    // names in Chinese (`阿依古丽·买买提`), Japanese (`ジョン・スミス`).
    let between_non_latin = |i: usize| {
        between_letters(i)
            && !is_latin(chars[i - 1])
            && !chars.get(i + 1).is_some_and(|&c| is_latin(c))
    };
    // Catalan's `l·l` (`Gal·la`), whatever the case.
    let catalan = |i: usize| {
        i > 0 && matches!(chars[i - 1], 'l' | 'L') && matches!(chars.get(i + 1), Some('l' | 'L'))
    };
    // A letter that looks like a dot, a slash or a colon (UTS #39 confusables: `ꞏ`,
    // `ꓸ`, `ː`) only inside a word of its own script, never Latin: `wwwꞏevilꞏcom` and
    // `evil ꓸ com` must not read as addresses.
    let punctuation_like = |i: usize| {
        let c = chars[i];
        looks_like_punctuation(c)
            && (is_latin(c)
                || !has_own_script(c)
                || i == 0
                || !same_script(chars[i - 1], c)
                || !chars.get(i + 1).is_some_and(|&n| same_script(n, c)))
    };
    let mut letters = false;
    for (i, &c) in chars.iter().enumerate() {
        let ok = match c {
            ' ' | '\'' | '\u{2019}' | '-' | '\u{2010}' | '\u{2011}' | '\u{2013}' => true,
            '.' => (initial_before(i) && fine_after_dot(i)) || abbreviation_before(i),
            '\u{00B7}' => catalan(i) || between_non_latin(i),
            '\u{30FB}' => between_non_latin(i),
            // Tibetan's syllable mark, after a syllable: `བཀྲ་ཤིས`, `ཚེ་རིང་`.
            '\u{0F0B}' | '\u{0F0C}' => {
                i > 0
                    && (letter(chars[i - 1]) || mark(chars[i - 1]))
                    && chars.get(i + 1).is_none_or(|&n| n == ' ' || letter(n))
            }
            // Kept only where a script needs them (`is_joiner_in_context`).
            '\u{200C}' | '\u{200D}' => between_letters(i),
            c if letter(c) => {
                letters = true;
                !punctuation_like(i) && !is_small_capital(c) && !is_symbol_letter(c)
            }
            // A mark belongs to the letter before it: alone, it floats over a space.
            c => {
                mark(c)
                    && !is_styling_mark(c)
                    && i > 0
                    && (letter(chars[i - 1]) || mark(chars[i - 1]))
            }
        };
        if !ok {
            return false;
        }
    }
    letters
}

/// The key an identifier typed at login (a login or an email) is looked up by:
/// the same folding as sign-up (NFKC, IDNA domain, lower case), so `ｊｅａｎ@…`
/// finds the account `jean@…` was stored as.
#[must_use]
pub fn lookup_key(raw: &str) -> String {
    if let Some((_, key)) = normalise_email(raw) {
        return key;
    }
    raw.trim().nfkc().collect::<String>().to_lowercase()
}

/// Normalises an email address: trimmed, NFKC-folded (so a fullwidth `ａ17@exemple.fr`
/// is the same address as `a17@exemple.fr`, not a lookalike beside it), syntax
/// checked, domain lower-cased and IDNA-encoded (UTS #46, so `Élysée.FR` becomes
/// `xn--lyse-9oad.fr`).
/// Returns `(address, uniqueness key)`; the key is the whole address lower-cased.
#[must_use]
pub fn normalise_email(raw: &str) -> Option<(String, String)> {
    let trimmed: String = raw.trim().nfkc().collect();
    let (local, domain) = trimmed.rsplit_once('@')?;
    // Quoted local parts and IP-literal domains are valid RFC 5322 but no portal
    // user has one, and they complicate every later comparison.
    if local.is_empty() || local.starts_with('"') || domain.starts_with('[') {
        return None;
    }
    let domain = idna::domain_to_ascii(domain).ok()?;
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok || !domain.contains('.') {
        return None;
    }
    let address = format!("{local}@{domain}");
    if address.len() > 254 || !email_address::EmailAddress::is_valid(&address) {
        return None;
    }
    let key = address.to_lowercase();
    Some((address, key))
}

/// Whether mail to `address` (as [`normalise_email`] gives it) can go through any
/// mail server: its part before the `@` is ASCII. Accents there need SMTPUTF8,
/// which many servers refuse, so the confirmation would never arrive (the domain is
/// IDNA-encoded, hence always ASCII).
#[must_use]
pub fn is_deliverable_everywhere(address: &str) -> bool {
    address.is_ascii()
}

/// The message of an address refused by [`is_deliverable_everywhere`].
pub const NON_ASCII_LOCAL_PART: &str = "Cette adresse contient des accents ou des caractères \
    spéciaux avant le « @ » : la plupart des messageries ne peuvent pas y écrire, et le courriel \
    de confirmation n'arriverait pas. Utilisez une adresse sans accents avant le « @ ».";

/// Why a phone number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneProblem {
    /// Not a valid number.
    Invalid,
    /// A valid number followed by an extension (`ext 5`, `poste 12`): E.164 has no
    /// place for it, and dropping it silently would store another number.
    Extension,
}

/// Parses a phone number, French by default, into E.164.
///
/// # Errors
/// [`PhoneProblem::Extension`] when the number carries an extension, else
/// [`PhoneProblem::Invalid`] when it is not a valid number or holds letters.
pub fn parse_phone(raw: &str) -> Result<String, PhoneProblem> {
    let raw = raw.trim();
    if before_french_poste(raw).is_some_and(|number| parse_plain_phone(number).is_ok()) {
        return Err(PhoneProblem::Extension);
    }
    parse_plain_phone(raw)
}

/// What comes before a French extension at the end of `raw` (`poste 12`, `Poste: 12`,
/// `p. 12`), which the parser does not know: it reads `poste` as keypad digits.
/// The caller still checks that this is a whole number, so that a bare `p.` is a
/// poste only after one.
fn before_french_poste(raw: &str) -> Option<&str> {
    let digits = raw.len() - raw.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    // At most 7 digits, as the parser allows after `ext`.
    if !(1..=7).contains(&digits) {
        return None;
    }
    let rest = raw[..raw.len() - digits].trim_end();
    let (rest, punctuated) = match rest.strip_suffix(['.', ':']) {
        Some(rest) => (rest.trim_end(), true),
        None => (rest, false),
    };
    let marker = if ends_with_ignoring_case(rest, "poste") {
        "poste"
    } else if punctuated && ends_with_ignoring_case(rest, "p") {
        "p"
    } else {
        return None;
    };
    Some(rest[..rest.len() - marker.len()].trim_end_matches([' ', ',', '-']))
}

fn ends_with_ignoring_case(s: &str, suffix: &str) -> bool {
    s.len()
        .checked_sub(suffix.len())
        .and_then(|start| s.get(start..))
        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
}

fn parse_plain_phone(raw: &str) -> Result<String, PhoneProblem> {
    let number = phonenumber::parse(Some(phonenumber::country::Id::FR), raw)
        .map_err(|_| PhoneProblem::Invalid)?;
    if number.extension().is_some() {
        return Err(PhoneProblem::Extension);
    }
    // The parser reads letters as keypad digits (`06 AB…` is `06 22…`): a typo or a
    // vanity number would be stored as some other number.
    if raw.chars().any(char::is_alphabetic) {
        return Err(PhoneProblem::Invalid);
    }
    phonenumber::is_valid(&number)
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
        .ok_or(PhoneProblem::Invalid)
}

/// Parses a phone number, French by default, into E.164; `None` when refused.
#[must_use]
pub fn normalise_phone(raw: &str) -> Option<String> {
    parse_phone(raw).ok()
}

/// The fields a person fills in on the sign-up form and edits on the profile, with
/// one set of rules for both.
#[derive(Debug, Clone)]
pub(crate) struct PersonFields {
    pub(crate) given_name: String,
    pub(crate) family_name: String,
    pub(crate) phone: String,
    pub(crate) function: String,
}

/// Checks names, phone and function, adding each broken rule to `v`.
pub(crate) fn person_fields(
    v: &mut Violations,
    given_name: &str,
    family_name: &str,
    phone: &str,
    function: &str,
) -> PersonFields {
    let given_name = name_field(v, "given_name", given_name, "Le prénom est obligatoire.");
    let family_name = name_field(v, "family_name", family_name, "Le nom est obligatoire.");
    let parsed = parse_phone(phone);
    if phone.trim().is_empty() {
        v.add("phone", "required", "Le téléphone est obligatoire.");
    } else {
        match parsed {
            Ok(_) => {}
            Err(PhoneProblem::Extension) => v.add(
                "phone",
                "extension",
                "Les numéros avec un poste (« ext », « poste ») ne sont pas acceptés : \
                 indiquez le numéro direct, sans le poste.",
            ),
            Err(PhoneProblem::Invalid) => v.add(
                "phone",
                "invalid",
                "Le numéro de téléphone n'est pas valide (exemple : 06 12 34 56 78).",
            ),
        }
    }
    let function = text_field(v, "function", function, None, FUNCTION_MAX, false);
    PersonFields {
        given_name,
        family_name,
        phone: parsed.unwrap_or_default(),
        function,
    }
}

/// A login reduced for comparison with the reserved names: lower case, without the
/// separators, so that `admin.`, `ad-min` and `Ad_Min` all read `admin`.
fn reserved_key(login: &str) -> String {
    login
        .chars()
        .filter(|c| !matches!(c, '.' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `login` passes for one of the reserved names, separators ignored.
#[must_use]
pub fn is_reserved_login(login: &str) -> bool {
    let key = reserved_key(login);
    RESERVED_LOGINS.iter().any(|r| reserved_key(r) == key)
}

fn check_login(v: &mut Violations, raw: &str) -> (String, String) {
    let login = raw.trim().to_owned();
    let key = login.to_lowercase();
    let shape_ok = LOGIN_CHARS.contains(&login.chars().count())
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && login
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if login.is_empty() {
        v.add("login", "required", "Le login est obligatoire.");
    } else if !shape_ok {
        v.add(
            "login",
            "invalid",
            "Le login doit contenir de 3 à 32 caractères : lettres sans accent, chiffres, point, \
             tiret ou tiret bas, et commencer par une lettre ou un chiffre.",
        );
    } else if is_reserved_login(&login) {
        v.add(
            "login",
            "reserved",
            "Ce login est réservé ; choisissez-en un autre.",
        );
    } else if looks_like_a_domain(&key) {
        v.add(
            "login",
            "domain_like",
            "Un login ne peut pas ressembler à une adresse de site (comme « nom.fr ») ; \
             choisissez-en un autre, par exemple « prenom.nom ».",
        );
    }
    (login, key)
}

/// Top-level domains a site address of a phishing message would most likely end
/// with (France's, the common generic ones, the neighbours').
// Not every TLD: a list of all (1 500, with `.paris` and `.alsace`) would refuse
// real logins; these are the ones people read as a site without a second look.
const SITE_ENDINGS: &[&str] = &[
    "fr", "com", "net", "org", "eu", "info", "io", "gouv", "gov", "app", "dev", "online", "site",
    "link", "click", "xyz", "top", "biz", "co", "me", "be", "ch", "lu", "de", "uk",
];

/// Whether a login (lower case) reads as a site address (`datagrandest-secu.fr`,
/// `www.x`): the sign-up's confirmation email names the login, and mail programs turn
/// such names into links, in an email from us to an address nobody has confirmed.
fn looks_like_a_domain(key: &str) -> bool {
    key.starts_with("www.")
        || key
            .rsplit_once('.')
            .is_some_and(|(head, end)| !head.is_empty() && SITE_ENDINGS.contains(&end))
}

impl SignUpForm {
    /// What the password must not contain, as typed on this form.
    #[must_use]
    pub fn password_context(&self) -> PasswordContext {
        PasswordContext {
            login: self.login.clone(),
            given_name: clean_text(&self.given_name),
            family_name: clean_text(&self.family_name),
            email: self.email.clone(),
        }
    }

    /// Checks every rule that needs no database.
    ///
    /// # Errors
    /// All the broken rules, each with its French message.
    pub fn validate(&self) -> Result<ValidSignUp, Violations> {
        let mut v = Violations::new();
        let person = person_fields(
            &mut v,
            &self.given_name,
            &self.family_name,
            &self.phone,
            &self.function,
        );
        let email = normalise_email(&self.email);
        if self.email.trim().is_empty() {
            v.add("email", "required", "Le courriel est obligatoire.");
        } else if email.is_none() {
            v.add(
                "email",
                "invalid",
                "L'adresse électronique n'est pas valide (exemple : prenom.nom@exemple.fr).",
            );
        } else if email
            .as_ref()
            .is_some_and(|(address, _)| !is_deliverable_everywhere(address))
        {
            v.add("email", "non_ascii", NON_ASCII_LOCAL_PART);
        }
        let organisation_id = self.organisation_id.trim().to_owned();
        let proposed = text_field(
            &mut v,
            "proposed_organisation",
            &plain_letters(&self.proposed_organisation),
            None,
            ORGANISATION_MAX,
            false,
        );
        let proposed = single_spaces(&proposed);
        if organisation_id.is_empty() && proposed.is_empty() {
            v.add(
                "organisation_id",
                "required",
                "Choisissez votre organisme dans la liste, ou cochez « Mon organisme n'apparaît pas \
                 dans la liste » et indiquez son nom.",
            );
        } else if !organisation_id.is_empty() && !proposed.is_empty() {
            // The page's checkbox sends one or the other; a gRPC caller can send both,
            // and keeping one silently would file the person under the wrong one.
            v.add(
                "proposed_organisation",
                "exclusive",
                "Choisissez votre organisme dans la liste ou indiquez le nom d'un organisme \
                 absent de la liste, pas les deux.",
            );
        } else if v.message_for("proposed_organisation").is_none() && has_styled_letters(&proposed)
        {
            v.add(
                "proposed_organisation",
                "characters",
                "Le nom contient des lettres décorées (petites capitales, lettres barrées, \
                 soulignées ou entourées) : écrivez-le en lettres simples.",
            );
        } else if v.message_for("proposed_organisation").is_none()
            && has_mixed_script_words(&proposed)
        {
            v.add(
                "proposed_organisation",
                "mixed_scripts",
                "Un mot du nom mélange des alphabets différents (par exemple une lettre \
                 cyrillique parmi des lettres latines) : écrivez-le dans un seul alphabet.",
            );
        }
        let description = text_field(
            &mut v,
            "description",
            &self.description,
            None,
            DESCRIPTION_MAX,
            true,
        );
        let (login, login_key) = check_login(&mut v, &self.login);
        let password = check_new_password(
            &mut v,
            ("password", "password_confirmation"),
            &self.password,
            &self.password_confirmation,
            &self.password_context(),
        );
        v.into_result()?;
        let (email, email_key) = email.unwrap_or_default();
        Ok(ValidSignUp {
            given_name: person.given_name,
            family_name: person.family_name,
            email,
            email_key,
            phone: person.phone,
            organisation_id: (!organisation_id.is_empty()).then_some(organisation_id),
            proposed_organisation: (!proposed.is_empty()).then_some(proposed),
            function: person.function,
            description,
            login,
            login_key,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> SignUpForm {
        SignUpForm {
            given_name: "Jeanne".into(),
            family_name: "Dupont".into(),
            email: "Jeanne.Dupont@GrandEst.FR".into(),
            phone: "06 12 34 56 78".into(),
            organisation_id: "region-grand-est".into(),
            function: "Cheffe de projet".into(),
            login: "JDupont".into(),
            password: Secret::new("Correct-Horse-9".into()),
            password_confirmation: Secret::new("Correct-Horse-9".into()),
            ..SignUpForm::default()
        }
    }

    fn fields(form: &SignUpForm) -> Vec<(&'static str, &'static str)> {
        form.validate()
            .err()
            .map(|v| v.iter().map(|x| (x.field, x.code)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_good_form_is_normalised() {
        let ok = good().validate().expect("valid");
        assert_eq!(ok.email, "Jeanne.Dupont@grandest.fr");
        assert_eq!(ok.email_key, "jeanne.dupont@grandest.fr");
        assert_eq!(ok.phone, "+33612345678");
        assert_eq!(ok.login_key, "jdupont");
    }

    #[test]
    fn international_phone_form_is_accepted() {
        assert_eq!(
            normalise_phone("+33 6 12 34 56 78").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(normalise_phone("12"), None);
    }

    #[test]
    fn each_password_rule_is_reported() {
        for (pw, code) in [
            ("Sh0rt!", "too_short"),
            ("ALLUPPERCASE-123", "no_lowercase"),
            ("alllowercase-123", "no_uppercase"),
            ("NoDigitsHere-!!", "no_digit"),
            ("NoSpecials12345", "no_special"),
        ] {
            let mut f = good();
            f.password = Secret::new(pw.into());
            f.password_confirmation = Secret::new(pw.into());
            assert_eq!(fields(&f), [("password", code)], "{pw}");
        }
    }

    #[test]
    fn mismatched_confirmation_is_reported() {
        let mut f = good();
        f.password_confirmation = Secret::new("Other-Horse-99".into());
        assert_eq!(fields(&f), [("password_confirmation", "mismatch")]);
    }

    #[test]
    fn password_containing_the_login_is_refused() {
        let mut f = good();
        f.password = Secret::new("xxJDUPONTxx-1".into());
        f.password_confirmation = f.password.clone();
        assert_eq!(fields(&f), [("password", "contains_login")]);
    }

    #[test]
    fn names_with_line_breaks_are_refused() {
        let mut f = good();
        f.given_name = "Jeanne\r\nBcc: x@y.fr".into();
        assert_eq!(fields(&f), [("given_name", "control_characters")]);
    }

    #[test]
    fn unicode_line_separators_and_bidi_overrides_are_refused() {
        for name in [
            "Jeanne\u{2028}Bcc",
            "Jeanne\u{202E}tnopuD",
            "\u{FEFF}Jeanne",
            "Jea\u{200B}nne",
            "Jea\u{200D}nne",
            "Jea\u{200C}nne",
            "Jea\u{2060}nne",
            "Jea\u{AD}nne",
            "Jea\u{3164}nne",
            "Jea\u{115F}nne",
            "Jea\u{FFA0}nne",
            "Jea\u{2800}nne",
            "Jea\u{34F}nne",
            "Jea\u{FE0F}nne",
            "Jea\u{180B}nne",
            // Unassigned (reserved default ignorables among them), private use,
            // noncharacters.
            "Jea\u{2065}nne",
            "Jea\u{E0080}nne",
            "Jea\u{FFF0}nne",
            "Jea\u{E000}nne",
            "Jea\u{F0000}nne",
            "Jea\u{FDD0}nne",
        ] {
            let mut f = good();
            f.given_name = name.into();
            assert_eq!(
                fields(&f),
                [("given_name", "control_characters")],
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_are_written_with_letters() {
        for bad in [
            "Votre compte est suspendu, allez sur https://evil.example/reset",
            "evil.example",
            "Jean@exemple.fr",
            "12345",
            "!!!",
            "Jean 2",
            "'-",
            "<b>Jean</b>",
            "J.com",
            "www.impots.fr",
            "Jean.",
            "\u{B7}Jean",
            // A Lisu letter for the dot, a syllabics final for the slash.
            "evil\u{A4F8}example\u{141F}reset",
            // A Cyrillic letter inside a Latin word.
            "Pa\u{0443}l",
            // Letters that look like dots or colons (a tester's finds): Latin ones
            // anywhere, others alone.
            "www\u{A78F}evil\u{A78F}com",
            "evil \u{A4F8} com",
            "https\u{2D0}\u{1C0}\u{1C0}evil",
            // A middle dot between Latin letters other than Catalan's l·l.
            "www\u{B7}evil\u{B7}com",
            "evil\u{30FB}com",
            // A dot after a long word, or inside one.
            "Dupont. Jean",
            "ab.cd",
            // Small capitals, strokes through letters, a circle, underlining.
            "\u{1D07}\u{1D20}\u{026A}\u{029F}",
            "J\u{336}e\u{336}a\u{336}n\u{336}",
            "Jea\u{338}n",
            "Jean\u{20DD}",
            "J\u{332}e\u{332}a\u{332}n\u{332}",
            // A tester's finds: a line spanning letters, an arrow above, pictures of
            // letters, a colon of the shared modifier letters.
            "J\u{35F}e\u{35F}a\u{35F}n",
            "Jean\u{20D7}",
            "\u{1F174}\u{1F185}\u{1F178}\u{1F17B}",
            "https\u{2B9}\u{2D0}\u{2B9}\u{2B9}evil",
            // Underlines and double marks outside the first list (a second tester).
            "J\u{952}e\u{952}a\u{952}n",
            "J\u{1DCD}e",
            "J\u{353}e\u{353}a\u{353}n",
            "J\u{33A}ean",
            "J\u{1AB5}ean",
            // A mark with no letter under it.
            "\u{301}Jean",
            "Jean \u{307}",
        ] {
            let mut f = good();
            f.given_name = bad.into();
            assert_eq!(fields(&f), [("given_name", "characters")], "{bad:?}");
        }
        // A zero-width (non-)joiner where no script needs it only hides.
        for hidden in [
            "Jean\u{200C}ne",
            "\u{200C}Jean",
            "Jean\u{200D}",
            "Ana\u{200D}\u{0644}",
        ] {
            let mut f = good();
            f.given_name = hidden.into();
            assert_eq!(
                fields(&f),
                [("given_name", "control_characters")],
                "{hidden:?}"
            );
        }
        for ok in [
            "J.-P.",
            "J.P.",
            "J. Dupont",
            "Gal\u{B7}la",
            "Anne\u{2013}Marie",
            "Jean\u{2011}Luc",
            "\u{963F}\u{4F9D}\u{53E4}\u{4E3D}\u{B7}\u{4E70}\u{4E70}\u{63D0}",
            "Jean-Pierre",
            "O'Neil",
            "D\u{2019}Artagnan",
            "Anne Marie",
            "Nguy\u{1EC5}n",
            "\u{0416}\u{0430}\u{043D}\u{043D}\u{0430}",
            "\u{5F20}\u{4F1F}",
            "Ji\u{307}\u{303}",
            // Persian Alizadeh, with the non-joiner its spelling needs.
            "\u{0639}\u{0644}\u{06CC}\u{200C}\u{0632}\u{0627}\u{062F}\u{0647}",
            // Devanagari: a joiner after the virama.
            "\u{0915}\u{094D}\u{200D}\u{0937}\u{092E}\u{093E}",
            // Japanese and Korean mixes of scripts within a word are allowed.
            "\u{7530}\u{4E2D}\u{30BF}\u{30ED}\u{30A6}",
            "\u{AE40}\u{BBFC}\u{C900}",
            // Several scripts, each word of one.
            "Marie \u{674E}",
            // Abbreviations, Catalan's geminate l, Japanese transliteration.
            "Dupont Jr.",
            "St. John",
            "Ste. Marie",
            "GAL\u{B7}LA",
            "\u{30B8}\u{30E7}\u{30F3}\u{30FB}\u{30B9}\u{30DF}\u{30B9}",
            "Gwenc'hlan",
            "A\u{2BB}isha",
            // Letters of African alphabets that look phonetic, and a click.
            "\u{0186}\u{025B}\u{014B}",
            "\u{01C2}Garoeb",
            // Transliteration and Yoruba marks below.
            "T\u{331}aha",
            "Ade\u{329}",
            // Tibetan syllables: Tashi, Tsering with its closing mark.
            "\u{F56}\u{F40}\u{FB2}\u{F0B}\u{F64}\u{F72}\u{F66}",
            "\u{F5A}\u{F7A}\u{F0B}\u{F62}\u{F72}\u{F44}\u{F0B}",
        ] {
            let mut f = good();
            f.given_name = ok.into();
            assert_eq!(fields(&f), [], "{ok:?}");
        }
    }

    #[test]
    fn logins_that_read_as_a_site_address_are_refused() {
        for bad in [
            "datagrandest-secu.fr",
            "Evil.COM",
            "www.impots",
            "jean.dupont.eu",
        ] {
            let mut f = good();
            f.login = bad.into();
            assert_eq!(fields(&f), [("login", "domain_like")], "{bad:?}");
        }
        for ok in [
            "jean.dupont",
            "j.fr-martin",
            "frcom",
            "marie_fr",
            "paul.frank",
            "fr.dupont",
        ] {
            let mut f = good();
            f.login = ok.into();
            assert_eq!(fields(&f), [], "{ok:?}");
        }
    }

    #[test]
    fn a_proposed_organisation_mixing_scripts_in_a_word_is_refused() {
        let mut f = good();
        f.organisation_id = String::new();
        f.proposed_organisation = "R\u{E9}gion Grand \u{415}st".into();
        assert_eq!(fields(&f), [("proposed_organisation", "mixed_scripts")]);
        f.proposed_organisation =
            "Syndicat des eaux \u{2014} \u{41C}\u{43E}\u{441}\u{43A}\u{432}\u{430}".into();
        assert_eq!(fields(&f), []);
    }

    #[test]
    fn a_proposed_organisation_in_styled_letters_is_refused_and_its_spaces_tidied() {
        let mut f = good();
        f.organisation_id = String::new();
        for styled in [
            "ATMO Grand \u{1D07}st",
            "ATMO Grand Est\u{35F}",
            "Eur\u{336}om\u{E9}tropole",
            "Strasbourg\u{20DD}",
            "\u{1F174}urom\u{E9}tropole",
        ] {
            f.proposed_organisation = styled.into();
            assert_eq!(
                fields(&f),
                [("proposed_organisation", "characters")],
                "{styled:?}"
            );
        }
        f.proposed_organisation = "ATMO  Grand   Est".into();
        let valid = f.validate().expect("valid");
        assert_eq!(
            valid.proposed_organisation.as_deref(),
            Some("ATMO Grand Est")
        );
    }

    #[test]
    fn organisation_names_read_alike_by_case_dashes_and_lookalikes() {
        for (a, b) in [
            ("R\u{E9}gion Grand Est", "REGION GRAND EST"),
            ("R\u{E9}gion Grand Est", "R\u{E9}gion-Grand-Est"),
            (
                "R\u{E9}gion Grand Est",
                "R\u{E9}gion\u{2010}Grand\u{2013}Est",
            ),
            ("R\u{E9}gion Grand Est", "R\u{E9}g\u{131}on Grand Est"),
            ("R\u{E9}gion Grand Est", "R\u{E9}gion Grand Est."),
            ("R\u{E9}gion Grand Est", "R\u{E9}gion Grand Est\u{2D0}"),
            ("Ville de Nancy", "VilIe de Nancy"),
            ("ATMO Grand Est", "ATM0 Grand Est"),
            ("ATMO Grand Est", "\u{391}\u{3A4}\u{39C}\u{39F} Grand Est"),
            ("Ville d'\u{C9}pinal", "Ville d\u{2019}\u{C9}pinal"),
            ("Ville d'\u{C9}pinal", "Ville d\u{2BC}\u{C9}pinal"),
            // A second tester's finds: case or accents and a lookalike at once, other
            // signs between the words.
            ("R\u{E9}gion Grand Est", "REGI0N GRAND EST"),
            ("R\u{E9}gion Grand Est", "Regi0n Grand Est"),
            (
                "Eurom\u{E9}tropole de Strasbourg",
                "EUROM\u{C9}TR0POLE DE STRASBOURG",
            ),
            ("Ville de Nancy", "Ville\u{2043}de\u{2043}Nancy"),
            ("Ville de Nancy", "Ville\u{2D7}de\u{2D7}Nancy"),
            ("Ville de Nancy", "Ville_de_Nancy"),
            ("Ville de Nancy", "Ville\u{B7}de\u{B7}Nancy"),
            ("Ville de Nancy", "Vi1le de Nancy"),
        ] {
            assert!(organisation_names_alike(a, b), "{a:?} {b:?}");
        }
        // Real, distinct names: ASCII letters are not read as other ASCII letters.
        for (a, b) in [
            ("Commune d'Ornes", "Commune d'Omes"),
            ("Commune de Mornas", "Commune de Momas"),
            ("CIAS de Metz", "CLAS de Metz"),
            ("Association ILE", "Association LLE"),
            // Roman numerals and numbers (a third tester's find).
            ("Universit\u{E9} Paris II", "Universit\u{E9} Paris 11"),
            ("Universit\u{E9} Paris III", "Universit\u{E9} Paris 111"),
            ("Ville de Nancy", "Ville de Metz"),
            ("R\u{E9}gion Grand Est", "R\u{E9}gion Grand Ouest"),
            ("", ""),
        ] {
            assert!(!organisation_names_alike(a, b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn runs_of_spaces_in_names_become_one() {
        let mut f = good();
        f.given_name = format!("Jean{}X", " ".repeat(60));
        let valid = f.validate().unwrap();
        assert_eq!(valid.given_name, "Jean X");
    }

    #[test]
    fn a_non_joiner_that_changes_nothing_is_dropped_and_a_spacing_acute_is_an_apostrophe() {
        let mut f = good();
        // Mohammadreza, with the non-joiner after dal many people type.
        f.given_name = "\u{645}\u{62D}\u{645}\u{62F}\u{200C}\u{631}\u{636}\u{627}".into();
        f.family_name = "O\u{B4}Neil".into();
        let valid = f.validate().expect("valid");
        assert_eq!(
            valid.given_name,
            "\u{645}\u{62D}\u{645}\u{62F}\u{631}\u{636}\u{627}"
        );
        assert_eq!(valid.family_name, "O\u{2019}Neil");
    }

    #[test]
    fn styled_letters_are_written_plainly() {
        for (typed, plain) in [
            // Mathematical bold, full width, circled, a ligature, a no-break space.
            ("\u{1D404}\u{1D42F}\u{1D422}\u{1D425}", "Evil"),
            ("\u{FF2A}\u{FF45}\u{FF41}\u{FF4E}", "Jean"),
            ("\u{24BF}\u{24D4}\u{24D0}\u{24DD}", "Jean"),
            ("\u{FB01}lippi", "filippi"),
            ("Jean\u{A0}Pierre", "Jean Pierre"),
            // Catalan's precomposed l with middle dot.
            ("Ga\u{140}la", "Gal\u{B7}la"),
        ] {
            let mut f = good();
            f.given_name = typed.into();
            f.proposed_organisation = format!("Mairie {typed}");
            f.organisation_id = String::new();
            let valid = f.validate().unwrap_or_else(|v| panic!("{typed:?}: {v:?}"));
            assert_eq!(valid.given_name, plain, "{typed:?}");
            assert_eq!(valid.proposed_organisation, Some(format!("Mairie {plain}")));
        }
        // Read plainly, the usual rules hold.
        let mut f = good();
        f.given_name = "\u{1D41E}\u{1D42F}\u{1D422}\u{1D425}.\u{1D41C}\u{1D428}\u{1D426}".into();
        assert_eq!(fields(&f), [("given_name", "characters")]);
    }

    #[test]
    fn names_are_nfc_normalised() {
        let mut f = good();
        f.family_name = "Cle\u{301}ment".into();
        assert_eq!(f.validate().expect("valid").family_name, "Cl\u{e9}ment");
    }

    #[test]
    fn names_with_piles_of_combining_marks_are_refused() {
        let flood = format!("e{}", "\u{301}".repeat(99));
        for (field, name) in [
            ("given_name", flood.as_str()),
            ("family_name", flood.as_str()),
            // Marks with no precomposed letter stay separate after NFC.
            ("given_name", "Jx\u{301}\u{302}\u{303}\u{304}anne"),
            ("family_name", "Dupont\u{20DD}\u{20DD}\u{20DD}\u{20DD}"),
            // `e` + 5 acute accents: NFC makes `é` + 4.
            ("family_name", "Cle\u{301}\u{301}\u{301}\u{301}\u{301}ment"),
            // A precomposed letter carries its own marks: `é` + 3 is four, `ệ` + 2 too.
            ("family_name", "Ze\u{301}\u{301}\u{301}\u{301}"),
            ("given_name", "Z\u{1EC7}\u{301}\u{301}"),
        ] {
            let mut f = good();
            if field == "given_name" {
                f.given_name = name.into();
            } else {
                f.family_name = name.into();
            }
            assert_eq!(fields(&f), [(field, "combining_marks")], "{name:?}");
        }
        // The profile shares the rule.
        let mut v = Violations::new();
        person_fields(&mut v, &flood, "Dupont", "06 12 34 56 78", "");
        assert_eq!(
            v.iter().map(|x| x.code).collect::<Vec<_>>(),
            ["combining_marks"]
        );
    }

    #[test]
    fn names_with_a_few_combining_marks_are_accepted() {
        for name in [
            "Cle\u{301}ment",
            "Nguye\u{302}\u{303}n",
            "Žemaite\u{307}",
            // Lithuanian ĩ with its dot: two marks, no precomposed letter.
            "Ji\u{307}\u{303}",
            // Yoruba e with dot below and acute: two marks.
            "Adé\u{323}",
            // Burmese « Kyaw »: three spacing vowel signs and one stacked mark.
            "\u{1000}\u{103B}\u{1031}\u{102C}\u{103A}",
            // Pointed Hebrew: shin with dagesh, qamats and its dot (three stacked).
            "\u{05E9}\u{05BC}\u{05B8}\u{05C1}",
        ] {
            let mut f = good();
            f.given_name = name.into();
            assert_eq!(fields(&f), [], "{name:?}");
        }
    }

    #[test]
    fn organisation_or_proposal_is_required() {
        let mut f = good();
        f.organisation_id = String::new();
        assert_eq!(fields(&f), [("organisation_id", "required")]);
        f.proposed_organisation = "Syndicat des eaux".into();
        assert!(f.validate().is_ok());
    }

    #[test]
    fn an_organisation_and_a_proposal_together_are_refused() {
        let mut f = good();
        f.proposed_organisation = "Syndicat des eaux".into();
        assert_eq!(fields(&f), [("proposed_organisation", "exclusive")]);
        // A blank proposal is no proposal.
        f.proposed_organisation = "  ".into();
        assert_eq!(fields(&f), []);
    }

    #[test]
    fn bad_logins_and_reserved_names_are_refused() {
        for (login, code) in [
            ("a", "invalid"),
            ("jé", "invalid"),
            ("-x-", "invalid"),
            ("Admin", "reserved"),
            ("admin.", "reserved"),
            ("ad-min", "reserved"),
            ("Ad_Min", "reserved"),
            ("no.reply", "reserved"),
            ("noreply_", "reserved"),
            ("root-", "reserved"),
        ] {
            let mut f = good();
            f.login = login.into();
            assert_eq!(fields(&f), [("login", code)], "{login}");
        }
    }

    #[test]
    fn logins_near_a_reserved_name_but_not_it_are_free() {
        for login in ["admins", "administrations", "rooter", "jdupont.admin"] {
            let mut f = good();
            f.login = login.into();
            assert_eq!(fields(&f), [], "{login}");
        }
    }

    #[test]
    fn a_phone_with_an_extension_is_refused_not_truncated() {
        for raw in [
            "06 12 34 56 78 ext 5",
            "+33 6 12 34 56 78 ext. 12",
            "0612345678 x5",
        ] {
            assert_eq!(parse_phone(raw), Err(PhoneProblem::Extension), "{raw}");
            let mut f = good();
            f.phone = raw.into();
            assert_eq!(fields(&f), [("phone", "extension")], "{raw}");
        }
        assert_eq!(parse_phone("06 12 34 56 78"), Ok("+33612345678".into()));
    }

    #[test]
    fn a_phone_with_a_french_poste_gets_the_extension_message() {
        for raw in [
            "06 12 34 56 78 poste 12",
            "06 12 34 56 78 POSTE 12",
            "06 12 34 56 78 Poste: 12",
            "06 12 34 56 78 poste : 1234",
            "06 12 34 56 78 poste. 12",
            "06 12 34 56 78, poste 12",
            "0612345678poste12",
            "+33 6 12 34 56 78 p. 12",
            "06 12 34 56 78 P.12",
        ] {
            assert_eq!(parse_phone(raw), Err(PhoneProblem::Extension), "{raw}");
            let mut f = good();
            f.phone = raw.into();
            assert_eq!(fields(&f), [("phone", "extension")], "{raw}");
        }
        // Only after a whole number is `poste` or `p.` a poste; otherwise the number is
        // simply invalid.
        for raw in [
            "06 12 34 poste 12",
            "06 12 34 56 78 p 12",
            "06 12 34 56 78 poste",
            "06 12 34 56 78 poste 12345678",
            "poste 12",
            "06 12 34 56 78 app. 12",
        ] {
            assert_eq!(parse_phone(raw), Err(PhoneProblem::Invalid), "{raw}");
        }
    }

    #[test]
    fn letters_in_a_phone_number_are_refused_not_read_as_digits() {
        for raw in [
            "+33 6 AB CD EF GH",
            "06 12 34 56 AB",
            "06 12 34 56 7B",
            "01 DATAGRANDEST",
            "0612345678a",
        ] {
            assert_eq!(parse_phone(raw), Err(PhoneProblem::Invalid), "{raw}");
            let mut f = good();
            f.phone = raw.into();
            assert_eq!(fields(&f), [("phone", "invalid")], "{raw}");
        }
    }

    #[test]
    fn fullwidth_addresses_are_folded_to_their_plain_form() {
        assert_eq!(
            normalise_email("ａ17@exemple.fr"),
            Some(("a17@exemple.fr".into(), "a17@exemple.fr".into()))
        );
        assert_eq!(
            normalise_email("Ａ17@ＥＸＥＭＰＬＥ.fr").map(|e| e.1),
            Some("a17@exemple.fr".into())
        );
    }

    #[test]
    fn idn_domains_are_lower_cased_and_encoded() {
        assert_eq!(
            normalise_email(" Jean@Élysée.FR "),
            Some((
                "Jean@xn--lyse-9oad.fr".into(),
                "jean@xn--lyse-9oad.fr".into()
            ))
        );
        assert_eq!(
            normalise_email("jean@xn--lyse-9oad.fr").map(|e| e.1),
            normalise_email("JEAN@ÉLYSÉE.fr").map(|e| e.1)
        );
    }

    #[test]
    fn bad_emails_are_refused() {
        for email in [
            "nope",
            "a@b",
            "a b@c.fr",
            "\"q\"@x.fr",
            "x@[127.0.0.1]",
            "@x.fr",
            "a@x..fr",
            "a@-x.fr.",
            "a@x_y.fr",
        ] {
            assert_eq!(normalise_email(email), None, "{email}");
        }
    }

    #[test]
    fn an_accented_part_before_the_at_sign_is_refused_with_its_own_message() {
        let mut form = good();
        form.email = "élise@exemple.fr".into();
        assert_eq!(fields(&form), [("email", "non_ascii")]);
        // Accents in the domain are fine: it is sent IDNA-encoded.
        form.email = "elise@exémple.fr".into();
        let ok = form.validate().expect("valid");
        assert_eq!(ok.email, "elise@xn--exmple-cva.fr");
    }
}
