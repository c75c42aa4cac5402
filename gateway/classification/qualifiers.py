"""Is a matched warning sign happening now? Negation, history and hypotheticals.

A red-flag phrase found in a message does not count when the words around it say
that it is absent ("no bleeding"), over ("the bleeding has stopped"), in the past
("I bled a lot with my first baby") or only imagined ("what should I do if my water
breaks?").  Doubt keeps it alive ("I'm not sure if my water broke").

Every check looks at a bounded window around the match (at most ~120 characters),
with regular expressions that have no nested quantifiers, so the cost per match is
constant and the whole check stays linear in the length of the message.
"""
from __future__ import annotations

import re

# Clause boundaries: a negation or history marker never reaches across them.
_BOUNDARY = re.compile(
    r"[.!?;:,()\[\]\"]|(?<!\w)(?:but|and|pero|y|however|although|though|except|until|"
    r"aunque|excepto|hasta|now|ahora|then|luego|since|desde|because|porque|"
    r"this time|esta vez|today|hoy|tonight|currently|ahorita)(?!\w)")
# The same without brackets: "I had a TIA (mini stroke) in 2015" is one clause of history.
_HISTORY_CLAUSE = re.compile(
    r"[.!?;:,\"]|(?<!\w)(?:but|and|pero|y|however|although|though|except|until|"
    r"aunque|excepto|hasta|now|ahora|then|luego|since|desde|because|porque|"
    r"this time|esta vez|today|hoy|tonight|currently|ahorita)(?!\w)")
# A scene set at the start of a sentence ("With my first, my water broke at 38 weeks")
# reaches past commas, up to the end of the sentence or a turn to the present.
_HISTORY_SCENE_SCOPE = re.compile(
    r"(?<!\d)\.(?!\d)|[!?;:]|(?<!\w)(?:but|pero|however|now|ahora|ahorita|this time|esta vez|today|hoy|"
    r"tonight|currently|right now)(?!\w)")
# Sentence boundaries: a hypothetical ("what if ...") reaches to the end of its sentence.
_SENTENCE = re.compile(
    r"(?<!\d)\.(?!\d)|[!?;:]|(?<!\w)(?:but|pero|however|now|ahora|ahorita|right now|this time|esta vez|"
    r"currently|actually|today|hoy|tonight)(?!\w)")
# Words that negate what follows them within the same clause (normalised: no apostrophes).
_NEG_BEFORE = re.compile(
    r"(?<!\w)(?:no|not|dont|doesnt|didnt|isnt|arent|wasnt|werent|havent|hasnt|hadnt|"
    r"wont|never|without|denies|deny|denied|nor|neither|negative|free of|"
    r"sin|nunca|ni|tampoco|nada de|ningun|ninguna|wala|walang|hindi|"
    # Portuguese, French, Italian, Polish, German, Haitian Creole (rules/lang-*.toml); not
    # Italian "non" before "stop" ("non-stop bleeding")
    r"nao|sem|nem|nenhum|nenhuma|jamais|pas|sans|aucun|aucune|rien|non(?! ?stop)|senza|mai|"
    r"nessun|nessuna|nessuno|neanche|nemmeno|niente|nie|bez|nigdy|zadnego|zadnej|zadnych|"
    r"ani|brak|kein\w*|nicht|ohne|niemals|nichts|weder|janm|jame|okenn|poko)(?!\w)")
# Phrases that look like negations or hypotheticals but express doubt about now.
_DOUBT = re.compile(
    r"(?<!\w)(?:not sure|dont know|do not know|no idea|not certain|unsure|cant tell|"
    r"not only|no se si|no estoy segur[ao]|no sabia|no se que|no matter|or not|"
    r"wondering|wonder|check if|checking if|see if|hindi ko alam|didnt know|did not know|"
    r"dont remember|didnt realize|no sabia|no conocia|no recuerdo)(?!\w)")
# After the finding: "the bleeding has stopped", "el sangrado ya paro".
_RESOLVED_AFTER = re.compile(
    r"^\W*(?:\w+\W+){0,3}?(?:has |have |had |is |are |finally |already )?"
    r"(?:stopped|went away|gone away|is gone|are gone|resolved|cleared up|"
    r"ya paro|se detuvo|se quito|ya se fue|ya paso)(?!\w)")
_NEG_AFTER_GUARD = re.compile(r"(?<!\w)(?:not|no|never|hasnt|havent|hadnt|didnt|wont|isnt)(?!\w)")
# A past episode set as a scene: "with my first (baby)", "in my last pregnancy", "con mi
# primer bebé", "the last time", "I went to the ER ...". But "16 weeks with my first" is now.
_HISTORY_SCENE = re.compile(
    r"(?<!\w)(?<!weeks )(?<!wks )(?<!pregnant )(?<!along )(?:with|in|during|after|for) my "
    r"(?:first|last|previous|prior|other|older|1st|earlier|past|eldest|oldest)(?!\w)"
    r"|(?<!\w)(?:last|previous|prior|first|other|past|earlier|older) (?:pregnanc\w*|"
    r"deliver\w*|births?|babys?|labou?rs?|c sections?|child|son|daughter|surgery)(?!\w)"
    r"|(?<!\w)(?:last time|the last time|la ultima vez|when i was pregnant with|"
    r"when i had my (?:son|daughter|first|other|older)|"
    r"when i (?:delivered|gave birth)|when (?:she|the baby|he) was born|cuando (?:naci[oa]|di a luz)|"
    r"during (?:my |her |the )?(?:labou?r|delivery|birth|c section)|embarazo pasado|"
    r"(?:went|been|was|were) (?:to|in|at) (?:the )?(?:er|emergency room|urgent care|hospital|l ?d)|"
    r"fui a (?:la )?(?:sala de )?emergencia\w*|estuve en (?:el hospital|emergencias?)|"
    r"me llevaron al hospital|(?:la|lo|los|las) llevamos (?:a|al) (?:la )?(?:emergencia\w*|hospital|urgencias)|"
    r"dinala (?:ako|siya|namin siya|nila ako) sa (?:er|ospital|hospital|emergency)|"
    r"con mi (?:primer|primera|otro|otra|ultimo|ultima|anterior)|"
    r"en mi (?:primer|primera|otro|otra|ultimo|ultima) (?:parto|embarazo|bebe|hij[oa]|cirugia)|"
    r"embarazo anterior|parto anterior|sa (?:una|panganay|dati) ko|noong (?:una|nakaraan)|"
    # a past month or an earlier week of this pregnancy set as the scene: "Back in October
    # when I was 30 weeks and had the allergic reaction, ..."
    r"(?:in|back in) (?:19|20)\d\d|"
    r"back in (?:january|february|march|april|may|june|july|august|september|october|"
    r"november|december|the spring|the summer|the fall|the winter)|"
    r"when i was (?:\d+|only|just) (?:weeks|wks|weeks pregnant|months pregnant))(?!\w)")
# A past (or future) time in the same clause: "years ago", "in 2019", "next pregnancy",
# "my mom had", "history". Not "last week": "fever after my cesarean last week" is now.
_HISTORY_TIME = re.compile(
    r"(?<!\w)(?:years? ago|a year ago|last year|in the past|history|historia|historial|"
    r"(?:year|years) and a half ago|and a half years ago|back then|"
    r"(?:my|in|during) (?:freshman|sophomore|junior|senior) year|in high school|"
    r"when i was (?:in high school|in college|a teenager|younger|little|\d+ years old|\d+)|"
    r"cuando (?:tenia|yo tenia) \d+(?: anos)?|cuando (?:era|yo era) (?:nina|chica|joven|"
    r"adolescente|pequena|menor)|de (?:nina|pequena|chica|adolescente)|"
    r"antecedentes|hx of|used to|runs in my family|always do|"
    r"as a (?:kid|child|teen|teenager)|since i was a (?:kid|child)|"
    r"my (?:mom|mother|moms|mothers|dad|father|sister|sisters|aunt|grandma|grandmother|"
    r"cousin|friend) (?:just |also |once |recently )?(?:had|got)|"
    r"last month|el mes pasado|noong isang buwan|(?:few|couple of|two|three|several|\d+) months ago|"
    r"hace (?:\d+|un|unos|dos|tres|varios) mes(?:es)?|"
    r"(?:in|back in|en) (?:19|20)\d\d|(?:in|en) (?:january|february|march|april|may|june|july|"
    r"august|september|october|november|december|enero|febrero|marzo|abril|mayo|junio|julio|"
    r"agosto|septiembre|octubre|noviembre|diciembre)|"
    r"next (?:pregnancy|baby|time)|future pregnanc\w*|(?:proximo|siguiente) embarazo|"
    r"hace (?:\d+|un|una|dos|tres|cuatro|cinco|varios) (?:anos|ano)|el ano pasado)(?!\w)")
# "what should I do if ...", "what if", "que hago si ...": asking about the future.
_HYPOTHETICAL = re.compile(
    r"(?<!\w)(?:what if|what (?:should|do|would|can) (?:i|we) do if|what to do if|what happens if|"
    r"what am i supposed to do if|what are we supposed to do if|que hacemos si|"
    r"in case of|if ever|if i ever|should i (?:call|come in|go in|go to \w+|worry) if|"
    r"when should i|when do i (?:call|go|come)|when to (?:call|go|come|worry)|"
    r"how (?:do|will|would|can) i (?:know|tell)|how to tell|"
    r"what are the (?:signs|symptoms)|what (?:signs|symptoms)|signs to watch|"
    r"watch (?:out )?for|look out for|can cause|may cause|could cause|might cause|"
    r"risk of|side effects?|they said|they told us|i read|i heard|puede causar|"
    r"says (?:to )?call|call (?:for|if)|call (?:us|the office) if|llamar si|llame si|"
    r"counts as|cuenta como|"
    r"if im ever|if i am ever|hypothetical\w*|asked (?:her|me|him|us) (?:directly )?if|"
    r"me preguntaron si|questionnaire|cuando (?:se debe|debo|tengo que|hay que) ir|"
    r"es para saber|"
    # someone else's story: "my friend said she didn't realize she was in labor"
    r"my (?:friends?|coworkers?|co workers?|neighbou?rs?|cousins?|sisters? in law|"
    r"sister in laws|best friends?|friends?s)|a friend|"
    r"mi (?:amiga|amigo|vecina|companera|prima|cunada)|una amiga|"
    r"(?:if|in case) (?:i|my \w+|the \w+|it|she|he|there|baby) (?:ever )?(?:start|starts|"
    r"begin|begins|develop|develops|break|breaks|happen|happens|stop|stops|"
    r"become|becomes|turn|turns|get|gets|got|went|goes|notice|notices)|"
    # planning for something that may go wrong later: "if something goes wrong (like fever)"
    r"if (?:something|anything) (?:goes|went|were to go) wrong|if (?:something|anything) happens|"
    r"si algo (?:sale|saliera) mal|si (?:algo|alguna cosa) pasa|planning ahead|"
    r"when do i (?:worry|need to worry)|cuando me preocupo|cuando (?:debo|tengo que) preocuparme|"
    r"que (?:hago|debo hacer|tengo que hacer) si|en caso de|si llegara|si me llega|si se me|"
    r"si se me rompe|si empiezo|si empieza|cuales son (?:los|las) (?:sintomas|senales)|"
    r"paano kung|kung sakali|kung pananglitan|kon pananglitan)(?!\w)")
# A small child's illness is never the patient's: "my toddler has had a fever since".  Not
# for a rule with `child_counts` (a toddler who swallowed a parent's pills is an emergency).
_SMALL_CHILD = re.compile(
    r"(?<!\w)my (?:toddler|preschooler|kindergartn?er|(?:[1-9]|one|two|three|four|five|six|"
    r"seven|eight|nine) (?:year|yr) old)(?!\w)")
# Doubt right before a hypothetical-looking "if": "not sure if the baby stops moving".
_DOUBT_IF = re.compile(r"(?:not sure|dont know|do not know|idk|unsure|wondering|no se|cant tell|"
                       r"check|checking|see|tell|ask|asking) $")
_LOOK_BEFORE = 120
_LOOK_AFTER = 80
_WINDOW_WORDS = 5


def _clause_before(text: str, start: int, boundary: re.Pattern) -> str:
    before = text[max(0, start - _LOOK_BEFORE):start]
    cut = None
    for cut in boundary.finditer(before):
        pass
    return before[cut.end():] if cut is not None else before


def _clause_after(text: str, end: int, boundary: re.Pattern) -> str:
    after = text[end:end + _LOOK_AFTER]
    m = boundary.search(after)
    return after[:m.start()] if m else after


def is_negated(text: str, start: int, end: int, words: int = _WINDOW_WORDS) -> bool:
    """True if the match text[start:end] is negated (within *words* words before it)
    or said to be resolved."""
    before = _clause_before(text, start, _BOUNDARY)
    window = " ".join(before.split()[-words:])
    if _DOUBT.search(window):
        return False
    if _NEG_BEFORE.search(window):
        return True
    after = _clause_after(text, end, _BOUNDARY)
    resolved = _RESOLVED_AFTER.search(after)
    return bool(resolved) and not _NEG_AFTER_GUARD.search(after[:resolved.end()])


def is_history(text: str, start: int, end: int) -> bool:
    """True if the match is told as a past episode ("with my first baby", "in 2019")."""
    # Search the text itself (not a copy of the clause) so look-behinds such as
    # "(?<!weeks )with my first" see the words before the clause.
    after = end + len(_clause_after(text, end, _HISTORY_CLAUSE))
    clause = start - len(_clause_before(text, start, _HISTORY_CLAUSE))
    if _HISTORY_TIME.search(text, clause, after):
        return True
    scene = start - len(_clause_before(text, start, _HISTORY_SCENE_SCOPE))
    return bool(_HISTORY_SCENE.search(text, scene, after))


def is_hypothetical(text: str, start: int, end: int, child_counts: bool = False) -> bool:
    """True if the sentence before the match asks "what if" / when to worry, in general,
    or tells a small child's illness (unless *child_counts*)."""
    before = _clause_before(text, start, _SENTENCE)
    if not child_counts and _SMALL_CHILD.search(before):
        return True
    for m in _HYPOTHETICAL.finditer(before):
        if not _DOUBT_IF.search(before[max(0, m.start() - 20):m.start()]):
            return True
    return False


# A past event already seen and cleared: "I fell ... went to L&D, they monitored me for 4
# hours and everything was fine".  Read after the sign, up to a turn back to the present.
_CLEARED = re.compile(
    r"(?<!\w)(?:monitored|me monitorearon|checked me|evaluated|they checked|"
    r"watched me|observed me|sent me home|discharged me|me mandaron a (?:la )?casa|"
    r"went to (?:the )?(?:\w+ )?(?:er|emergency room|urgent care|hospital|l ?&? ?d|triage)|"
    r"(?:at|in) (?:the )?(?:er|emergency room|urgent care)|saw (?:dr|doctor|the doctor|my doctor)|"
    r"fui a (?:la )?(?:sala de )?(?:emergencia\w*|l ?&? ?d|urgencias|hospital))(?!\w)")
_ALL_CLEAR = re.compile(
    r"(?<!\w)(?:everything (?:was|looked|came back|turned out) (?:fine|ok|okay|normal|good)|"
    r"all (?:good|fine|normal)|(?:was|were|came back) (?:all )?normal|"
    r"todo (?:salio|estuvo|estaba) (?:bien|normal)|salio todo bien|ya esta bien|"
    r"all was (?:good|fine|ok|okay|normal)|(?:okay|ok) na (?:po )?ako|"
    r"(?:ive|i have|she has|shes|hes|he has) been (?:totally |completely |perfectly )?"
    r"(?:fine|ok|okay|good)|feels? (?:fine|ok|okay|good|great|normal)|"
    r"(?:bleeding|it) (?:has |had )?stopped|(?:has had|have had|ive had|had) nothing since|"
    r"(?:ya )?estoy bien|se (?:me )?quito|"
    r"(?:im|i am|shes|she is|hes|he is) (?:totally |completely |perfectly |doing )?"
    r"(?:fine|ok|okay|good|great) now|"
    r"(?:we are|were|both|ambas|ambos) (?:\w+ )?(?:fine|ok|okay|bien))(?!\w)")
_TURN = re.compile(r"(?<!\w)(?:but|pero|however|now it|now i|again|otra vez|de nuevo|still|"
                   r"todavia|sigue|worse|peor|since this morning|today i|hoy)(?!\w)")
_CLEARED_AFTER = 260
# A report's or bill's own wording quoted: 'the pathology says "... hemorrhage ..."'.
_QUOTE_OPEN = re.compile(r"(?<!\w)(?:says|said|reads|states|shows|lists|listed|dice|decia)"
                         r" ?:? ?[\"\u201c]")


def already_cleared(text: str, start: int, end: int) -> bool:
    """True if the sign is followed, before any turn to the present, by a visit that
    already checked it and found all well."""
    after = text[end:end + _CLEARED_AFTER]
    turn = _TURN.search(after)
    if turn:
        after = after[:turn.start()]
    seen = _CLEARED.search(after) or _CLEARED.search(_clause_before(text, start, _SENTENCE))
    return bool(seen) and bool(_ALL_CLEAR.search(after))


# Explained afterwards, in the same sentence: "chest pain that turned out to be heartburn".
_EXPLAINED = re.compile(r"(?<!\w)(?:turned out|al final (?:era|eran|fue|fueron)|"
                        r"resulto (?:ser|que))(?!\w)")


def explained_after(text: str, end: int) -> bool:
    """True if the rest of the sign's sentence says what it turned out to be."""
    return bool(_EXPLAINED.search(_clause_after(text, end, _SENTENCE)))


def quoted_report(text: str, start: int) -> bool:
    """True if the match sits inside a quotation of a report ('it says "..."')."""
    before = text[max(0, start - _LOOK_BEFORE):start]
    opened = None
    for opened in _QUOTE_OPEN.finditer(before):
        pass
    if opened is None:
        return False
    return not re.search(r"[\"\u201d]", before[opened.end():])


def sign_not_now(text: str, start: int, end: int, child_counts: bool = False) -> bool:
    """`not_now` for a warning sign itself, plus: already checked and cleared, explained
    afterwards ("turned out to be heartburn"), or words quoted from a report.  (Context words such as a situation use `not_now` only.)"""
    return (not_now(text, start, end, child_counts=child_counts)
            or already_cleared(text, start, end)
            or explained_after(text, end) or quoted_report(text, start))


def gap_negated(match: re.Match) -> bool:
    """True if a word filling a phrase's "..." gap is a negation ("water not broken")."""
    return any(g and _NEG_BEFORE.search(g) for g in match.groups())


def not_now(text: str, start: int, end: int, negation_words: int = _WINDOW_WORDS,
            child_counts: bool = False) -> bool:
    """True when a matched sign is negated, over, past history or hypothetical.

    Context words (a situation, a second sign) pass a short *negation_words*: "I'm not
    pregnant" negates, but in "no me siento bien desde la operacion" the "no" is about
    feeling well, not about the operation."""
    return (is_negated(text, start, end, negation_words) or is_history(text, start, end)
            or is_hypothetical(text, start, end, child_counts))
