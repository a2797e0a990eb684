"""The job file: loading, defaults, presets, and an error naming file and key for each rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrun.errors import JobError, UsageError
from batchrun.job import Job, Price, ProviderSpec
from batchrun.providers.presets import KNOWN_APIS, PRESETS

SPEC_EXAMPLE = """\
name = "sentiment-labels"

[input]
path = "data/reviews.parquet"
id = "review_id"
prompt = "text"
template = "Label the sentiment of this review: {text}"
system = "Answer with one word."

[output]
path = "runs/sentiment"
keep_columns = ["gold_label"]
flush_rows = 1000
flush_seconds = 30
keep_raw = false

[[provider]]
name = "liandanxia"
api = "openai"
base_url = "https://api.example.com/v1"
api_key_env = "LIANDANXIA_API_KEY"
requests_per_minute = 600
tokens_per_minute = 400000
max_concurrency = 64
timeout_seconds = 300
headers = {}

[[variant]]
name = "qwen-t0"
provider = "liandanxia"
model = "Qwen3.5-35B-A3B"
stream = false
samples = 1
params = { temperature = 0, max_tokens = 1024 }
price = { input = 0.30, output = 1.20, cached_input = 0.03 }

[retry]
max_attempts = 6
backoff_initial_s = 1
backoff_max_s = 60
retry_after_max_s = 300

[parse]
reasoning = "auto"
json = false

[budget]
max_usd = 25.0
"""

SECTIONS = {
    "top": 'name = "t"',
    "input": '[input]\npath = "in.jsonl"\nprompt = "text"',
    "output": '[output]\npath = "out"',
    "provider": '[[provider]]\nname = "p"\napi = "openai"\nbase_url = "mock"',
    "variant": '[[variant]]\nname = "v"\nprovider = "p"\nmodel = "m"',
}


def toml(**parts: str) -> str:
    """A minimal valid job with some sections replaced (or added, in keyword order)."""
    return "\n\n".join({**SECTIONS, **parts}.values()) + "\n"


def write(folder: Path, text: str, name: str = "job.toml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(folder: Path, text: str) -> Job:
    return Job.from_toml(write(folder, text))


def error(folder: Path, text: str) -> str:
    with pytest.raises(JobError) as info:
        load(folder, text)
    return str(info.value)


# --- a valid job ---------------------------------------------------------------------------


def test_spec_example_loads_with_its_values(tmp_path: Path) -> None:
    job = load(tmp_path, SPEC_EXAMPLE)
    assert job.name == "sentiment-labels"
    assert job.input.path == "data/reviews.parquet"
    assert job.input.id == "review_id"
    assert job.input.template == "Label the sentiment of this review: {text}"
    assert job.input.format == "auto"
    assert job.output.keep_columns == ("gold_label",)
    (provider,) = job.providers
    assert provider.requests_per_minute == 600.0
    assert provider.tokens_per_minute == 400000.0
    assert provider.limits == "fixed"
    assert provider.headers == {}
    (variant,) = job.variants
    assert variant.params == {"temperature": 0, "max_tokens": 1024}
    assert variant.price == Price(input=0.30, output=1.20, cached_input=0.03)
    assert job.retry.max_attempts == 6
    assert job.budget.max_usd == 25.0
    assert job.base_dir == tmp_path.resolve()
    assert job.source.endswith("job.toml")


def test_minimal_job_gets_the_documented_defaults(tmp_path: Path) -> None:
    job = load(tmp_path, toml())
    assert job.output.flush_rows == 1000
    assert job.output.flush_seconds == 30.0
    assert job.output.keep_raw is False
    provider = job.providers[0]
    assert provider.max_concurrency == 64
    assert provider.timeout_seconds == 300.0
    assert provider.idle_timeout_seconds == 60.0
    assert provider.api_key_env is None
    variant = job.variants[0]
    assert (variant.samples, variant.stream, variant.params, variant.price) == (1, False, {}, None)
    assert (job.retry.max_attempts, job.retry.backoff_initial_s) == (6, 1.0)
    assert (job.retry.backoff_max_s, job.retry.retry_after_max_s) == (60.0, 300.0)
    assert (job.parse.reasoning, job.parse.json, job.parse.schema) == ("auto", False, None)
    assert job.budget.max_usd is None


def test_integers_are_accepted_where_numbers_are_expected(tmp_path: Path) -> None:
    job = load(tmp_path, toml(output='[output]\npath = "o"\nflush_seconds = 5'))
    assert job.output.flush_seconds == 5.0
    assert isinstance(job.output.flush_seconds, float)


def test_paths_resolve_against_the_job_files_folder(tmp_path: Path) -> None:
    job = Job.from_toml(write(tmp_path / "jobs", toml()))
    assert job.input_path() == (tmp_path / "jobs" / "in.jsonl").resolve()
    assert job.output_path() == (tmp_path / "jobs" / "out").resolve()


def test_with_overrides_replaces_paths_with_absolute_ones(tmp_path: Path) -> None:
    job = load(tmp_path, toml())
    moved = job.with_overrides(input_path="/data/x.jsonl", output_path="/runs/y")
    assert moved.input_path() == Path("/data/x.jsonl")
    assert moved.output_path() == Path("/runs/y")
    assert moved.input.prompt == job.input.prompt
    assert job.with_overrides() == job


def test_provider_looks_up_by_name(tmp_path: Path) -> None:
    job = load(tmp_path, toml())
    assert job.provider("p").base_url == "mock"
    with pytest.raises(KeyError):
        job.provider("nope")


def test_job_error_is_a_usage_error() -> None:
    assert issubclass(JobError, UsageError)


# --- the file itself ----------------------------------------------------------------------


def test_missing_file_says_so_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="not found") as info:
        Job.from_toml(tmp_path / "absent.toml")
    assert "absent.toml" in str(info.value)


def test_toml_syntax_error_keeps_line_and_column(tmp_path: Path) -> None:
    message = error(tmp_path, 'name = "t"\n\n[input]\npath = \n')
    assert "job.toml" in message
    assert "line 4" in message
    assert "column" in message


def test_from_dict_names_its_source_in_errors() -> None:
    with pytest.raises(JobError, match=r'^jobs/x\.toml: "name" is required'):
        Job.from_dict({}, source="jobs/x.toml")


# --- unknown keys and types ---------------------------------------------------------------


def test_unknown_variant_key_suggests_the_close_one(tmp_path: Path) -> None:
    message = error(tmp_path, toml(variant=SECTIONS["variant"] + "\nsampels = 2"))
    assert message.endswith(
        'job.toml: [[variant]] "v": unknown key "sampels" — did you mean "samples"?'
    )


def test_unknown_top_level_key_suggests_the_close_one(tmp_path: Path) -> None:
    text = toml().replace("[[variant]]", "[[variants]]")
    assert 'unknown key "variants" — did you mean "variant"?' in error(tmp_path, text)


@pytest.mark.parametrize(
    ("section", "table", "shown"),
    [
        ("input", '[input]\npath = "i"\nprompt = "p"\npromt = "x"', '[input]: unknown key "promt"'),
        ("output", '[output]\npath = "o"\nflush_row = 5', '[output]: unknown key "flush_row"'),
        ("retry", "[retry]\nmax_attempt = 2", '[retry]: unknown key "max_attempt"'),
        ("parse", '[parse]\nreasonning = "auto"', '[parse]: unknown key "reasonning"'),
        ("budget", "[budget]\nmax_usb = 1.0", '[budget]: unknown key "max_usb"'),
    ],
)
def test_unknown_keys_are_rejected_in_every_table(
    tmp_path: Path, section: str, table: str, shown: str
) -> None:
    assert shown in error(tmp_path, toml(**{section: table}))


def test_unknown_provider_key_suggests_the_close_one(tmp_path: Path) -> None:
    message = error(tmp_path, toml(provider=SECTIONS["provider"] + "\nmax_concurency = 4"))
    assert '[[provider]] "p": unknown key "max_concurency"' in message
    assert 'did you mean "max_concurrency"?' in message


def test_unknown_key_with_nothing_close_lists_the_expected_keys(tmp_path: Path) -> None:
    message = error(tmp_path, toml(budget="[budget]\nzzz = 1"))
    assert 'unknown key "zzz"; expected one of: "max_usd"' in message


def test_wrong_type_names_key_expectation_and_value(tmp_path: Path) -> None:
    message = error(tmp_path, toml(provider=SECTIONS["provider"] + '\nmax_concurrency = "ten"'))
    assert message.endswith(
        '[[provider]] "p": "max_concurrency" must be an integer >= 1, got "ten"'
    )


def test_a_bool_is_not_an_integer(tmp_path: Path) -> None:
    message = error(tmp_path, toml(variant=SECTIONS["variant"] + "\nsamples = true"))
    assert '"samples" must be an integer >= 1, got true' in message


def test_provider_written_as_single_table_points_to_double_brackets(tmp_path: Path) -> None:
    text = toml().replace("[[provider]]", "[provider]")
    assert "write [[provider]], not [provider]" in error(tmp_path, text)


# --- required keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "shown"),
    [
        ({"top": ""}, '"name" is required'),
        ({"input": '[input]\nprompt = "text"'}, '[input]: "path" is required'),
        ({"input": ""}, '[input]: "path" is required'),
        ({"output": "[output]"}, '[output]: "path" is required'),
        ({"provider": ""}, "at least one [[provider]] is required"),
        ({"variant": ""}, "at least one [[variant]] is required"),
        ({"provider": '[[provider]]\napi = "openai"\nbase_url = "mock"'}, '#1: "name" is required'),
        ({"provider": '[[provider]]\nname = "p"\nbase_url = "mock"'}, '"api" is required'),
        ({"provider": '[[provider]]\nname = "p"\napi = "openai"'}, '"base_url" is required'),
        ({"variant": '[[variant]]\nprovider = "p"\nmodel = "m"'}, '#1: "name" is required'),
        ({"variant": '[[variant]]\nname = "v"\nmodel = "m"'}, '"provider" is required'),
        ({"variant": '[[variant]]\nname = "v"\nprovider = "p"'}, '"v": "model" is required'),
    ],
)
def test_required_keys_are_named_when_missing(
    tmp_path: Path, parts: dict[str, str], shown: str
) -> None:
    assert shown in error(tmp_path, toml(**parts))


# --- [input] ------------------------------------------------------------------------------


def test_prompt_and_messages_together_are_rejected(tmp_path: Path) -> None:
    message = error(tmp_path, toml(input='[input]\npath = "i"\nprompt = "a"\nmessages = "b"'))
    assert '[input]: set only one of "prompt"' in message


def test_rows_format_needs_prompt_messages_or_template(tmp_path: Path) -> None:
    message = error(tmp_path, toml(input='[input]\npath = "i"\nformat = "rows"'))
    assert '"prompt"' in message
    assert '"template"' in message


def test_template_alone_is_enough_for_rows(tmp_path: Path) -> None:
    job = load(tmp_path, toml(input='[input]\npath = "i"\nformat = "rows"\ntemplate = "Hi {a}"'))
    assert job.input.template == "Hi {a}"


def test_auto_format_leaves_the_prompt_column_to_the_source_reader(tmp_path: Path) -> None:
    job = load(tmp_path, toml(input='[input]\npath = "batch.jsonl"'))
    assert (job.input.format, job.input.prompt, job.input.messages) == ("auto", None, None)


def test_openai_batch_format_needs_no_prompt_and_rejects_one(tmp_path: Path) -> None:
    job = load(tmp_path, toml(input='[input]\npath = "b.jsonl"\nformat = "openai-batch"'))
    assert job.input.format == "openai-batch"
    text = toml(input='[input]\npath = "b.jsonl"\nformat = "openai-batch"\nprompt = "text"')
    assert '"prompt" does not apply to format = "openai-batch"' in error(tmp_path, text)


def test_unknown_input_format_suggests_the_close_one(tmp_path: Path) -> None:
    message = error(tmp_path, toml(input='[input]\npath = "i"\nformat = "row"'))
    assert '"format" must be one of "auto", "rows", "openai-batch", got "row"' in message
    assert 'did you mean "rows"?' in message


def test_template_with_messages_is_rejected(tmp_path: Path) -> None:
    text = toml(input='[input]\npath = "i"\nmessages = "m"\ntemplate = "{x}"')
    assert '"template"' in error(tmp_path, text)


@pytest.mark.parametrize("template", ["Hi {name", "Hi {}", "Hi {0}"])
def test_broken_or_positional_templates_are_rejected(tmp_path: Path, template: str) -> None:
    message = error(tmp_path, toml(input=f'[input]\npath = "i"\ntemplate = "{template}"'))
    assert '[input]: "template"' in message


# --- [output] -----------------------------------------------------------------------------


def test_output_options_are_checked(tmp_path: Path) -> None:
    assert '"flush_rows" must be an integer >= 1, got 0' in error(
        tmp_path, toml(output='[output]\npath = "o"\nflush_rows = 0')
    )
    assert '"flush_seconds" must be a number > 0' in error(
        tmp_path, toml(output='[output]\npath = "o"\nflush_seconds = -1')
    )
    assert '"keep_columns" must be an array of strings' in error(
        tmp_path, toml(output='[output]\npath = "o"\nkeep_columns = "gold"')
    )
    assert '"keep_raw" must be true or false, got "yes"' in error(
        tmp_path, toml(output='[output]\npath = "o"\nkeep_raw = "yes"')
    )


# --- [[provider]] -------------------------------------------------------------------------


def provider(*lines: str, name: str = "p") -> str:
    return "\n".join(["[[provider]]", f'name = "{name}"', *lines])


def test_provider_names_must_be_unique(tmp_path: Path) -> None:
    text = toml(provider=SECTIONS["provider"] + "\n\n" + SECTIONS["provider"])
    assert 'another [[provider]] is also named "p"' in error(tmp_path, text)


def test_variant_names_must_be_unique(tmp_path: Path) -> None:
    text = toml(variant=SECTIONS["variant"] + "\n\n" + SECTIONS["variant"])
    assert 'another [[variant]] is also named "v"' in error(tmp_path, text)


def test_variant_must_name_an_existing_provider(tmp_path: Path) -> None:
    text = toml(
        provider=provider('api = "openai"', 'base_url = "mock"', name="liandanxia"),
        variant='[[variant]]\nname = "v"\nprovider = "liandanxa"\nmodel = "m"',
    )
    message = error(tmp_path, text)
    assert '[[variant]] "v": "provider" = "liandanxa" names no [[provider]]' in message
    assert 'did you mean "liandanxia"?' in message


def test_api_must_be_a_known_one(tmp_path: Path) -> None:
    message = error(tmp_path, toml(provider=provider('api = "opena"', 'base_url = "mock"')))
    assert '"api" must be one of "anthropic", "openai", "responses", got "opena"' in message
    assert 'did you mean "openai"?' in message


def test_base_url_must_be_http_or_mock(tmp_path: Path) -> None:
    message = error(tmp_path, toml(provider=provider('api = "openai"', 'base_url = "api.x.com"')))
    assert '"base_url" must be an http:// or https:// URL, or "mock"' in message


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((), "auto"),
        (("requests_per_minute = 60",), "fixed"),
        (("output_tokens_per_minute = 1000",), "fixed"),
        (('limits = "auto"', "tokens_per_minute = 1000"), "auto"),
        (('limits = "fixed"',), "fixed"),
    ],
)
def test_limits_are_auto_unless_a_ceiling_is_given(
    tmp_path: Path, lines: tuple[str, ...], expected: str
) -> None:
    job = load(tmp_path, toml(provider=provider('api = "openai"', 'base_url = "mock"', *lines)))
    assert job.providers[0].limits == expected


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("requests_per_minute = 0", '"requests_per_minute" must be a number > 0, got 0'),
        ("tokens_per_minute = -5", '"tokens_per_minute" must be a number > 0, got -5'),
        ("input_tokens_per_minute = inf", '"input_tokens_per_minute" must be a number > 0'),
        ("max_concurrency = 0", '"max_concurrency" must be an integer >= 1, got 0'),
        ("max_concurrency = 2.5", '"max_concurrency" must be an integer >= 1, got 2.5'),
        ("timeout_seconds = 0", '"timeout_seconds" must be a number > 0, got 0'),
        ("idle_timeout_seconds = false", '"idle_timeout_seconds" must be a number > 0, got false'),
        ('limits = "adaptive"', '"limits" must be one of "fixed", "auto", got "adaptive"'),
    ],
)
def test_provider_limits_are_checked(tmp_path: Path, line: str, shown: str) -> None:
    message = error(tmp_path, toml(provider=provider('api = "openai"', 'base_url = "mock"', line)))
    assert f'[[provider]] "p": {shown}' in message


def test_headers_pass_through(tmp_path: Path) -> None:
    lines = ('api = "openai"', 'base_url = "mock"', 'headers = { "X-Title" = "batchrun" }')
    assert load(tmp_path, toml(provider=provider(*lines))).providers[0].headers == {
        "X-Title": "batchrun"
    }


@pytest.mark.parametrize("header", ["Authorization", "authorization", "x-api-key", "X-Api-Key"])
def test_key_headers_are_rejected_in_favour_of_api_key_env(tmp_path: Path, header: str) -> None:
    lines = ('api = "openai"', 'base_url = "mock"', f'headers = {{ "{header}" = "Bearer sk-1" }}')
    message = error(tmp_path, toml(provider=provider(*lines)))
    assert f'"headers.{header}" is not allowed' in message
    assert "api_key_env" in message
    assert "sk-1" not in message


def test_header_values_must_be_strings(tmp_path: Path) -> None:
    lines = ('api = "openai"', 'base_url = "mock"', 'headers = { "X-N" = 3 }')
    assert '"headers.X-N" must be a string' in error(tmp_path, toml(provider=provider(*lines)))


def test_api_key_env_must_be_a_variable_name_and_is_not_echoed(tmp_path: Path) -> None:
    lines = ('api = "openai"', 'base_url = "mock"', 'api_key_env = "sk-secret-123"')
    message = error(tmp_path, toml(provider=provider(*lines)))
    assert '"api_key_env" must be the name of an environment variable' in message
    assert "sk-secret-123" not in message


# --- presets ------------------------------------------------------------------------------


def test_every_preset_uses_a_known_api() -> None:
    assert {preset.api for preset in PRESETS.values()} <= set(KNOWN_APIS)
    assert PRESETS["liandanxia"].base_url == "https://api.liandanxia.com/v1"
    assert PRESETS["jiekou"].base_url == "https://api.jiekou.ai/openai/v1"
    assert PRESETS["relay"].base_url is None


def test_preset_fills_api_and_base_url(tmp_path: Path) -> None:
    job = load(tmp_path, toml(provider=provider('preset = "deepseek"')))
    spec = job.providers[0]
    assert (spec.api, spec.base_url, spec.preset) == (
        "openai",
        "https://api.deepseek.com/v1",
        "deepseek",
    )


def test_explicit_keys_win_over_the_preset(tmp_path: Path) -> None:
    lines = ('preset = "openrouter"', 'base_url = "https://proxy.local/v1"')
    spec = load(tmp_path, toml(provider=provider(*lines))).providers[0]
    assert (spec.api, spec.base_url) == ("openai", "https://proxy.local/v1")


def test_unknown_preset_suggests_and_lists_the_presets(tmp_path: Path) -> None:
    message = error(tmp_path, toml(provider=provider('preset = "deepsek"')))
    assert 'unknown preset "deepsek" — did you mean "deepseek"?' in message
    assert '"liandanxia-anthropic"' in message


def test_relay_preset_needs_a_base_url(tmp_path: Path) -> None:
    message = error(tmp_path, toml(provider=provider('preset = "relay"')))
    assert 'preset "relay" has no fixed address: set base_url' in message
    lines = ('preset = "relay"', 'base_url = "https://relay.example/v1"')
    assert load(tmp_path, toml(provider=provider(*lines))).providers[0].api == "openai"


@pytest.mark.parametrize(
    "lines",
    [
        ('preset = "anthropic"',),
        ('preset = "liandanxia-anthropic"',),
        ('preset = "jiekou"',),
        ('api = "anthropic"', 'base_url = "mock"'),
    ],
)
def test_providers_that_require_max_tokens_say_how_to_add_it(
    tmp_path: Path, lines: tuple[str, ...]
) -> None:
    message = error(tmp_path, toml(provider=provider(*lines)))
    assert '[[variant]] "v": provider "p"' in message
    assert "add params = { max_tokens = " in message
    variant = SECTIONS["variant"] + "\nparams = { max_tokens = 512 }"
    job = load(tmp_path, toml(provider=provider(*lines), variant=variant))
    assert job.variants[0].params == {"max_tokens": 512}


def test_max_tokens_must_be_a_positive_integer(tmp_path: Path) -> None:
    variant = SECTIONS["variant"] + '\nparams = { max_tokens = "1k" }'
    assert '"params.max_tokens" must be an integer >= 1, got "1k"' in error(
        tmp_path, toml(variant=variant)
    )


# --- [[variant]] --------------------------------------------------------------------------


def test_params_pass_provider_specific_fields_through(tmp_path: Path) -> None:
    params = (
        "params = { top_k = 20, min_p = 0.0, separate_reasoning = true, "
        "stream_options = { include_usage = true }, n = 1 }"
    )
    job = load(tmp_path, toml(variant=SECTIONS["variant"] + "\nstream = true\n" + params))
    assert job.variants[0].stream is True
    assert job.variants[0].params == {
        "top_k": 20,
        "min_p": 0.0,
        "separate_reasoning": True,
        "stream_options": {"include_usage": True},
        "n": 1,
    }


@pytest.mark.parametrize(
    ("key", "instead"),
    [("model", "model = ..."), ("messages", "[input]"), ("stream", "stream = true")],
)
def test_params_may_not_set_what_has_its_own_key(tmp_path: Path, key: str, instead: str) -> None:
    variant = SECTIONS["variant"] + f'\nparams = {{ {key} = "x" }}'
    message = error(tmp_path, toml(variant=variant))
    assert f'"params.{key}" is not allowed' in message
    assert instead in message


def test_n_above_one_is_rejected_in_favour_of_samples(tmp_path: Path) -> None:
    message = error(tmp_path, toml(variant=SECTIONS["variant"] + "\nparams = { n = 4 }"))
    assert '"params.n" = 4 is not supported: use samples = 4 instead' in message
    assert "seeded on its own" in message


def test_params_refuse_values_json_cannot_carry(tmp_path: Path) -> None:
    variant = SECTIONS["variant"] + "\nparams = { stop = [1979-05-27] }"
    assert '"params.stop[0]" cannot be sent as JSON' in error(tmp_path, toml(variant=variant))


def test_samples_must_be_at_least_one(tmp_path: Path) -> None:
    message = error(tmp_path, toml(variant=SECTIONS["variant"] + "\nsamples = 0"))
    assert '"samples" must be an integer >= 1, got 0' in message


@pytest.mark.parametrize(
    ("price", "shown"),
    [
        ("{ input = 1.0 }", '"price.output" is required'),
        ("{ input = -1, output = 1 }", '"price.input" must be a number >= 0, got -1'),
        ("{ input = 1, output = 1, cached = 0.1 }", 'unknown key "price.cached"'),
        ('{ input = 1, output = "2" }', '"price.output" must be a number >= 0, got "2"'),
        ("3.0", '"price" must be a table, got 3.0'),
    ],
)
def test_price_is_checked(tmp_path: Path, price: str, shown: str) -> None:
    assert shown in error(tmp_path, toml(variant=SECTIONS["variant"] + f"\nprice = {price}"))


def test_free_price_without_cached_input_is_valid(tmp_path: Path) -> None:
    variant = SECTIONS["variant"] + "\nprice = { input = 0, output = 0 }"
    assert load(tmp_path, toml(variant=variant)).variants[0].price == Price(0.0, 0.0, None)


# --- [retry], [budget] --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("max_attempts = 0", '[retry]: "max_attempts" must be an integer >= 1, got 0'),
        ("backoff_initial_s = 0", '"backoff_initial_s" must be a number > 0, got 0'),
        ("backoff_max_s = -1", '"backoff_max_s" must be a number > 0, got -1'),
        ("retry_after_max_s = 0", '"retry_after_max_s" must be a number > 0, got 0'),
        ("backoff_initial_s = 10\nbackoff_max_s = 5", '"backoff_max_s" must be >='),
    ],
)
def test_retry_values_are_checked(tmp_path: Path, line: str, shown: str) -> None:
    assert shown in error(tmp_path, toml(retry=f"[retry]\n{line}"))


def test_budget_must_be_positive(tmp_path: Path) -> None:
    message = error(tmp_path, toml(budget="[budget]\nmax_usd = 0"))
    assert '[budget]: "max_usd" must be a number > 0, got 0' in message


# --- [parse] ------------------------------------------------------------------------------


def test_reasoning_mode_is_checked(tmp_path: Path) -> None:
    message = error(tmp_path, toml(parse='[parse]\nreasoning = "off"'))
    assert '"reasoning" must be one of "auto", "none", got "off"' in message


@pytest.mark.parametrize("line", ['fields = ["label"]', 'schema = { type = "object" }'])
def test_fields_and_schema_need_json(tmp_path: Path, line: str) -> None:
    assert "needs json = true" in error(tmp_path, toml(parse=f"[parse]\n{line}"))


def test_inline_schema_and_fields_load(tmp_path: Path) -> None:
    parse = '[parse]\njson = true\nfields = ["label"]\nschema = { type = "object" }'
    job = load(tmp_path, toml(parse=parse))
    assert job.parse.schema == {"type": "object"}
    assert job.parse.fields == ("label",)


def test_schema_file_is_read_relative_to_the_job_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = {"type": "object", "properties": {"label": {"enum": ["pos", "neg"]}}}
    (tmp_path / "jobs" / "schemas").mkdir(parents=True)
    (tmp_path / "jobs" / "schemas" / "label.json").write_text(json.dumps(schema))
    path = write(
        tmp_path / "jobs", toml(parse='[parse]\njson = true\nschema = "schemas/label.json"')
    )
    monkeypatch.chdir(tmp_path)
    assert Job.from_toml(Path("jobs") / path.name).parse.schema == schema


def test_missing_schema_file_is_a_job_error(tmp_path: Path) -> None:
    message = error(tmp_path, toml(parse='[parse]\njson = true\nschema = "nope.json"'))
    assert '[parse]: "schema" file not found: nope.json' in message


def test_schema_file_with_bad_json_is_a_job_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"type": ')
    message = error(tmp_path, toml(parse='[parse]\njson = true\nschema = "bad.json"'))
    assert '"schema" file bad.json is not valid JSON' in message


def test_invalid_schema_is_reported_with_the_problem(tmp_path: Path) -> None:
    parse = '[parse]\njson = true\nschema = { type = "object", properties = { a = { type = 12 } } }'
    message = error(tmp_path, toml(parse=parse))
    assert '"schema" is not a valid JSON Schema' in message
    assert "properties.a.type" in message


# --- snapshot -----------------------------------------------------------------------------


def test_to_dict_round_trips_through_json_and_from_dict(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "object"}')
    text = SPEC_EXAMPLE.replace("json = false", 'json = true\nschema = "s.json"\nfields = ["x"]')
    text += '\n[[provider]]\nname = "a"\npreset = "anthropic"\napi_key_env = "ANTHROPIC_API_KEY"\n'
    text += 'headers = { "anthropic-beta" = "x" }\nlimits = "auto"\nrequests_per_minute = 50\n'
    text += '\n[[variant]]\nname = "claude"\nprovider = "a"\nmodel = "c"\nsamples = 3\n'
    text += "params = { max_tokens = 64, stop = ['\\n'], metadata = { k = [1, 2.5] } }\n"
    job = load(tmp_path, text)
    snapshot = json.loads(json.dumps(job.to_dict()))
    assert snapshot["parse"]["schema"] == {"type": "object"}
    again = Job.from_dict(snapshot, base_dir=job.base_dir, source=job.source)
    assert again == job
    assert isinstance(again.provider("a"), ProviderSpec)


def test_to_dict_leaves_out_unset_values(tmp_path: Path) -> None:
    snapshot = load(tmp_path, toml()).to_dict()
    assert "api_key_env" not in snapshot["provider"][0]
    assert "price" not in snapshot["variant"][0]
    assert snapshot["budget"] == {}
