"""The gateway's TOML configuration: defaults, the documented example, and bad settings refused clearly."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def _documented() -> str:
    section = DOC.read_text(encoding="utf-8").split("## Configuration", 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match
    return match.group(1)


def test_the_documented_settings_are_the_defaults(tmp_path: Path) -> None:
    documented = parse_config(tomllib.loads(_documented()), tmp_path, "docs")
    assert documented == parse_config({}, tmp_path, "embedded defaults")
    assert documented.key_file == tmp_path / "liuhen-gateway-data" / "gateway.key"
    assert list(documented.bays.listen().values())[:2] == [("127.0.0.1", 8501), ("127.0.0.1", 8502)]
    assert documented.dock.gateway == "liuhen-gateway"


def test_paths_are_relative_to_the_file_and_bays_may_be_listed(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\nid = "GW-7"\ndata_dir = "d"\n[gateway.server]\ntrust_file = "t.json"\n'
                    '[gateway.dock]\naddresses = ["10.0.7.1:8701", "10.0.8.1:8701"]\n[gateway.upload]\n'
                    'backoff_min_s = 2\n', encoding="utf-8")
    config = load_config(path)
    assert config.data_dir == tmp_path / "d" and config.server.trust_file == tmp_path / "t.json"
    assert config.bays.listen() == {"bay-1": ("10.0.7.1", 8701), "bay-2": ("10.0.8.1", 8701)}
    assert config.upload.backoff_min_s == 2.0 and config.dock.gateway == "GW-7"


@pytest.mark.parametrize(("text", "says"), [
    ("[gateway]\nname = 'x'\n", "unknown settings in [gateway]: name"),
    ("[gateway]\nid = 'no spaces allowed'\n", "is not an identifier"),
    ("[gateway.dock]\ncount = '8'\n", "[gateway.dock] count must be an integer"),
    ("[gateway.dock]\ncount = 0\n", "1-64 bays"),
    ("[gateway.dock]\naddresses = ['nohost']\n", "must be host:port"),
    ("[gateway.dock]\naddresses = ['a:1', 'a:1']\n", "two bays share an address"),
    ("[gateway.dock]\nfirst_port = 65530\n", "bay ports must be 1-65535"),
    ("[gateway.upload]\nconcurrency = 99\n", "concurrency must be 1-16"),
    ("[gateway.server]\nurl = 'ftp://x'\n", "must start with http://"),
    ("[gateway.server]\nserver_url = 'http://x'\n", "unknown settings in [gateway.server]: server_url"),
    ("[gateway.station]\ntoken = 'short'\n", "station token must be at least"),
    ("[gateway.mqtt]\ntls = true\n", "the embedded broker speaks plain MQTT"),
    ("[gateway.mqtt]\nembedded = 'yes'\n", "embedded must be true or false"),
    ("[gateway]\nserver = 3\n", "[gateway.server] must be a table"),
])
def test_bad_settings_are_refused_with_their_name(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert says in str(caught.value) and str(path) in str(caught.value)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[gateway\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(tmp_path / "bad.toml")
