"""Which language a patient reads: the roster's ``language`` column, else the language of
the patient's own new text, else English.

The detector is small on purpose: it tells English from Spanish (the only two languages
with templates) by counting function words that belong to one language only, plus the
letters and marks only Spanish uses (ñ, ¿, ¡, accented vowels).  It answers "unsure" for
short text, for text in neither language and for text that mixes both, so the choice
falls back to the roster and then to English.  bench/language_eval.py measures it on the
holdout mail.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

ENGLISH = "en"
# Languages with a full set of patient templates and pages (English is the fallback).
SUPPORTED = ("en", "es")

# Function words and very common words that are not also words of the other language
# ("a", "no", "me", "son", "come", "con" are left out on purpose).
_WORDS = {
    "en": frozenset("""
        the and is are was were be been have has had do does did not my your our it its this
        that these those i you he she we they what when where why how which who with for
        from of to in on at by about after before since until today yesterday tomorrow
        please thanks thank hi hello dear can could would should will just need want get
        got feel feeling pain appointment doctor question results week weeks day days
        morning night an or but if so very much more some any there here been still""".split()),
    "es": frozenset("""
        el la los las un una unos unas y es son está están estoy estaba fue ser estar
        tengo tiene tienen tenía hay mi mis su sus tu nuestro que qué por para pero porque
        cuando cuándo donde dónde como cómo muy más del al lo le les ya también hola buenos
        buenas días tardes noches gracias favor quiero quisiera necesito puedo puede
        pueden desde hasta ayer hoy mañana semana semanas dolor cita doctor doctora
        médico resultados pregunta bebé sangre fiebre calentura embarazada embarazo mucho
        mucha poco hace ahora todavía siento duele usted ustedes señor señora yo ella
        ellos nosotros esta este estos estas eso esto sobre sin entre otra otro""".split()),
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_SPANISH_MARKS = re.compile(r"[ñ¿¡áéíóú]", re.IGNORECASE)
MIN_WORDS = 4  # shorter text is never a sure guess
MIN_HITS = 3   # the winner needs this many marker words
RATIO = 3.0    # ... and this many times the other language's score


@dataclass(frozen=True)
class Guess:
    language: str | None  # best candidate, None when nothing points anywhere
    sure: bool


# Function words of other languages written in the Latin script (accents removed, as
# classification.text.normalize leaves them), none of them an English, Spanish or Tagalog
# word: they tell the classifier that a text is in a language its model never learned.
_OTHER_WORDS = {
    "pt": frozenset("""agora ainda amanha com depois doutora ela ele entao essa esse estava estou foi hoje isso isto meu minha muita muito nao obrigada obrigado onde ontem pra sou tambem tenho tive uma umas voce vou""".split()),
    "fr": frozenset("""au aujourdhui aussi aux avec avoir beaucoup bonjour cest cette chez dans demain depuis des du elle et etre fait ils jai je leur merci moi nous pas peu peux quand quil sont suis toujours une veux votre vous""".split()),
    "it": frozenset("""adesso alla anche ancora avere buongiorno che ci degli dei della delle domani dopo dottoressa essere fatto gia gli grazie hai ho ieri mia mio molto nel nella oggi perche piu posso questa questo sono stata stato sto tutto vorrei""".split()),
    "pl": frozenset("""ale bardzo byla bylam czuje czy dla dobry dziekuje dzien dzisiaj jak jest jestem jeszcze jutro juz ktora ktory mialam mnie moge moj moja moje nie pani prosze przez sie tak tego teraz tylko wczoraj wiem ze""".split()),
    "de": frozenset("""aber auch bei bin bitte danke dass der ein eine gestern habe hatte heute ich ist jetzt kann keine mein meine mich mir mit morgen nach nicht noch nur oder schon sehr seit und vom von weil wenn wir zum""".split()),
    "ht": frozenset("""ak anko anpil anvan apre bezwen bonjou demen dwe gen genyen isit jodi kapab ki kijan kisa konnen konsa kote kounye lopital mesi mwen nou paske pitit pou poukisa pral pwoblem tanpri tou toujou vle yon""".split()),
}
_OTHER_ANY = frozenset().union(*_OTHER_WORDS.values())
_READ_NORMALISED = frozenset(w.translate(str.maketrans("áéíóúñ", "aeioun"))
                             for w in _WORDS["en"] | _WORDS["es"])
OTHER_MIN = 4  # at least this many function words of another language ...
OTHER_RATIO = 2.0  # ... and this many times the English and Spanish ones


def in_other_language(normalised: str, limit: int = 6000) -> bool:
    """Whether a normalised text is written mostly in a Latin-script language other than
    English and Spanish (Portuguese, French, Italian, Polish, German, Haitian Creole)."""
    words = _WORD.findall(normalised[:limit])
    other = sum(1 for w in words if w in _OTHER_ANY)
    if other < OTHER_MIN:
        return False
    read = sum(1 for w in words if w in _READ_NORMALISED)
    return other >= OTHER_RATIO * max(read, 1)


def marker_words(text: str, limit: int = 6000) -> int:
    """How many English or Spanish marker words the first LIMIT characters hold."""
    words = _WORD.findall((text or "")[:limit].lower())
    return sum(1 for w in words if w in _WORDS["en"] or w in _WORDS["es"])


def detect(text: str, limit: int = 20_000) -> Guess:
    """Guess the language of TEXT (only its first LIMIT characters are read)."""
    sample = (text or "")[:limit].lower()
    words = _WORD.findall(sample)
    counts = Counter(words)  # each distinct word looked up once, not each occurrence
    scores = {lang: sum(counts[w] for w in counts.keys() & vocab)
              for lang, vocab in _WORDS.items()}
    scores["es"] += min(len(_SPANISH_MARKS.findall(sample)), len(words)) * 0.5
    best, other = sorted(scores, key=lambda k: (-scores[k], k))
    if scores[best] == 0:
        return Guess(None, False)
    sure = (len(words) >= MIN_WORDS and scores[best] >= MIN_HITS
            and scores[best] >= RATIO * max(scores[other], 0.5))
    return Guess(best, sure)


def normalize_code(value: str | None) -> str | None:
    """An ISO 639-1 code ('es', 'ES', ' es ') as 'es'; None when blank or not a code."""
    code = (value or "").strip().lower()
    return code if len(code) == 2 and code.isascii() and code.isalpha() else None


@dataclass(frozen=True)
class Choice:
    language: str   # the language the patient's mail is written in (a SUPPORTED one)
    detected: str   # what staff see in X-Portal-Language
    sure: bool      # False: the emergency notice adds a second language


def choose(roster_language: str | None, text: str, guess: Guess | None = None) -> Choice:
    """Roster language first, else the text's language when the guess is sure, else
    English.  `sure` is True only when English is not in doubt or the language is known.
    GUESS: `detect(text)` worked out before (the pipeline's content phase)."""
    guess = detect(text) if guess is None else guess
    roster = normalize_code(roster_language)
    if roster in SUPPORTED:
        language, sure = roster, True
    elif guess.sure and guess.language in SUPPORTED:
        language, sure = guess.language, True
    else:
        language, sure = ENGLISH, False
    detected = guess.language if guess.sure and guess.language else (roster or language)
    if language == ENGLISH and guess.sure and guess.language != ENGLISH:
        sure = False  # the roster says English but the patient wrote in something else
    return Choice(language, detected, sure)


def notice_languages(choice: Choice) -> list[str]:
    """Languages of the emergency notice, in order: the patient's first, English too
    whenever the language is not English or the guess is unsure."""
    if choice.language != ENGLISH:
        return [choice.language, ENGLISH]
    if choice.sure:
        return [ENGLISH]
    if choice.detected in SUPPORTED and choice.detected != ENGLISH:
        return [choice.detected, ENGLISH]  # the patient wrote in it: theirs first
    return [ENGLISH, "es"]  # nothing known: English first, Spanish for the likeliest reader


def patient_language(patient, text: str = "") -> str:
    """The language of mail that answers no new patient text: invites, notifications and
    the suspension notice follow the roster, else English; a staff answer passes its own
    TEXT, whose language (when sure) decides, so the footer matches the answer."""
    guess = detect(text) if text else Guess(None, False)
    if guess.sure and guess.language in SUPPORTED:
        return guess.language
    roster = normalize_code(getattr(patient, "language", None))
    return roster if roster in SUPPORTED else ENGLISH
