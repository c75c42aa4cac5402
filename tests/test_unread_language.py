"""A message in a language the gateway does not read cannot be ruled out as an emergency:
it is raised to emergency (on-call, the urgent clock) with a rule staff can read."""
from __future__ import annotations

import pathlib

import pytest

from gateway.classification import Classifier, RuleError
from gateway.classification.unread import RULE_ID, is_unread

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.load(ROOT / "rules")


UNREAD = [
    "医生您好，我是刘晓燕，宝宝出生五周了。这几个星期我几乎每天都在哭，晚上睡不着，有时候想从阳台跳下去。",
    "선생님 안녕하세요, 저는 지난 목요일에 복강경 자궁적출술을 받았습니다. 어제부터 열이 나요.",
    "ਡਾਕਟਰ ਸਾਹਿਬ ਜੀ, ਮੈਂ 31 ਹਫ਼ਤਿਆਂ ਦੀ ਗਰਭਵਤੀ ਹਾਂ। ਅੱਜ ਸਵੇਰੇ ਉੱਠੀ ਤਾਂ ਪਾਣੀ ਨਿਕਲ ਰਿਹਾ ਸੀ।",
    "Здравствуйте доктор, у меня сильно болит живот и идёт кровь со вчерашнего вечера.",
    "مرحبا دكتورة، أنا حامل في الأسبوع الثلاثين وعندي صداع شديد منذ الصباح",
    "Chào bác sĩ, em mới sinh bé được 12 ngày. Từ hôm qua em ra máu nhiều, cứ một tiếng "
    "phải thay băng vệ sinh, người mệt lắm.",
]


@pytest.mark.parametrize("text", UNREAD)
def test_text_we_cannot_read_goes_to_the_urgent_path(clf, text):
    r = clf.classify(text, subject="question")
    assert r.category == "emergency" and r.urgent, r.explain()
    assert RULE_ID in r.rule_ids  # staff see why: "a language the gateway does not read"


@pytest.mark.parametrize("text", [
    "Hi, my name is Nguyễn Thị Hồng and I need to move my appointment to next Tuesday please",
    "Hola doctora, ¿me puede mandar mis resultados? Gracias, María Peña Núñez",
    "Hello po doc, pwede po ba i-move yung appointment ko sa Friday? Salamat po",
    "谢谢",  # too short to judge
    "Please update my address. 我的新地址: 123 Main St",  # mostly English
    # Vietnamese with enough English for the model and rules to read
    "Chị ơi, kết quả xét nghiệm máu của em có chưa? still waiting on my blood test results",
    "Em mới đổi số điện thoại: 714-555-0199. please update my phone number",
    "Gracias 😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊😊",
    "\u200f\u200e\u202e" * 200 + "can I get a copy of my bill",
    "",
])
def test_text_we_read_is_not_flagged(clf, text):
    assert not is_unread(text)
    assert RULE_ID not in clf.classify(text).rule_ids


def test_a_huge_text_is_judged_by_its_beginning_quickly():
    assert is_unread("医生您好" * 50_000)
    assert not is_unread("Hello doctor " * 1_000 + "医生您好" * 50_000)


def test_ops_can_turn_it_off_and_a_bad_value_names_the_file(tmp_path):
    (tmp_path / "r.toml").write_text('[[rule]]\nid = "billing-bill"\ncategory = "billing"\n'
                                     'weight = 3\nreason = "a bill"\nphrases = ["bill"]\n')
    (tmp_path / "s.toml").write_text("[settings]\nunread_language_urgent = false\n")
    off = Classifier.load(tmp_path, use_model=False)
    assert RULE_ID not in off.classify(UNREAD[0]).rule_ids
    (tmp_path / "s.toml").write_text('[settings]\nunread_language_urgent = "yes"\n')
    with pytest.raises(RuleError) as err:
        Classifier.load(tmp_path)
    assert "s.toml" in str(err.value) and "unread_language_urgent" in str(err.value)


# Routine mail in languages the gateway does not read, with no word of danger: sorted by
# the model (here with the thread's context), marked for a reader, never raised.
QUIET = [
    ("Здравствуйте. Прошу обновить мои данные: новый адрес 7721 Auburn Blvd, Apt 14, "
     "Citrus Heights, новый телефон 916-555-0148. Спасибо.", None),
    ("Xin chào, tôi đã chuyển nhà, xin vui lòng cập nhật địa chỉ mới của tôi: 1520 Brookhurst "
     "St, Garden Grove. Cảm ơn.", None),
    ("Здравствуйте, подтверждаю приём 5 ноября в 10:30. Со мной будет моя мама.",
     "appointment_reminder"),
]


@pytest.mark.parametrize("text,context", QUIET)
def test_unread_text_without_a_danger_word_is_not_raised_but_marked(clf, text, context):
    r = clf.classify(text, subject="", context_kind=context)
    assert r.category != "emergency" and not r.urgent, r.explain()
    assert "unread-language" in r.rule_ids and RULE_ID not in r.rule_ids


@pytest.mark.parametrize("text", [
    "Здравствуйте, у меня кровотечение и очень болит живот, что делать?",
    "医生您好，我是王医生的病人，我怀孕三十周，今天早上破水了，怎么办",
    "Chào bác sĩ, em đang mang thai 34 tuần, em bị ra máu nhiều quá",
    "선생님, 임신 32주인데 아기가 오늘 하루종일 안 움직여요",
    "مرحبا، أنا حامل وعندي نزيف منذ الصباح",
])
def test_a_danger_word_raises_whatever_else_is_said(clf, text):
    r = clf.classify(text, subject="")
    assert r.category == "emergency" and RULE_ID in r.rule_ids, r.explain()


def test_without_the_danger_file_every_unread_message_is_raised(tmp_path):
    (tmp_path / "r.toml").write_text('[[rule]]\nid = "billing-bill"\ncategory = "billing"\n'
                                     'weight = 3\nreason = "a bill"\nphrases = ["bill"]\n')
    clf = Classifier.load(tmp_path, use_model=False)
    assert RULE_ID in clf.classify(QUIET[0][0]).rule_ids


@pytest.mark.parametrize("body,fragment", [
    ('[[danger]]\nlang = "ru"\nname = "Russian"\nwords = ["bleeding"]\n', "ASCII"),
    ('[[danger]]\nlang = "ru"\nwords = ["кровь"]\ncolour = "red"\n', "colour"),
    ('[[danger]]\nlang = "Russian"\nwords = ["кровь"]\n', "lang"),
    ('[[danger]]\nlang = "ru"\nwords = []\n', "words"),
    ('[[danger]]\nlang = "ru"\nwords = ["кровь"]\n[[danger]]\nlang = "ru"\nwords = ["боль"]\n',
     "twice"),
    ('[[danger]]\nlang = "ru"\nwords = ["' + "я" * 41 + '"]\n', "at most"),
    ('danger = 3\n', "[[danger]]"),
    ('[[danger]\n', "cannot read"),
])
def test_a_bad_danger_file_names_the_file_and_the_table(tmp_path, body, fragment):
    (tmp_path / "r.toml").write_text('[[rule]]\nid = "billing-bill"\ncategory = "billing"\n'
                                     'weight = 3\nreason = "a bill"\nphrases = ["bill"]\n')
    (tmp_path / "unread.toml").write_text(body)
    with pytest.raises(RuleError) as err:
        Classifier.load(tmp_path, use_model=False)
    assert "unread.toml" in str(err.value) and fragment in str(err.value)


def test_hostile_danger_text_is_matched_as_plain_text(tmp_path):
    """Regex syntax in a word is a literal; a huge hostile text is searched once."""
    (tmp_path / "r.toml").write_text('[[rule]]\nid = "billing-bill"\ncategory = "billing"\n'
                                     'weight = 3\nreason = "a bill"\nphrases = ["bill"]\n')
    (tmp_path / "unread.toml").write_text('[[danger]]\nlang = "ru"\nwords = ["кровь.*(", "ж+"]\n')
    clf = Classifier.load(tmp_path, use_model=False)
    assert RULE_ID not in clf.classify("Здравствуйте, у меня кровь идёт " * 10).rule_ids
    assert RULE_ID in clf.classify("Здравствуйте, у меня кровь.*( идёт " * 10).rule_ids
    assert RULE_ID not in clf.classify("Здравствуйте " * 100_000).rule_ids
