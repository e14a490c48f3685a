"""server.py and the control routes: lifecycle, config at run time, the CLI entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from emu_helpers import RUNWAY_HEADERS, SEGMIND_HEADERS, picture, png_bytes, wait_until

from prefect_runway.emulator import Emulator, EmulatorConfig, key_id
from prefect_runway.emulator.media import fit, mean_abs_difference, probe_video

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


async def test_async_context_manager_and_port_zero():
    async with Emulator(EmulatorConfig(latency=0.1)) as emu:
        assert emu.url.startswith("http://127.0.0.1:") and emu.port > 0
        async with httpx.AsyncClient(base_url=emu.url, trust_env=False) as client:
            response = await client.get("/_emulator/health")
            assert response.json() == {"ok": True}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{emu.url}/_emulator/health", trust_env=False)


def test_two_emulators_side_by_side():
    with Emulator() as one, Emulator() as two:
        assert one.port != two.port
        one.configure(latency=9)
        assert two.config.latency == 2.0


def test_config_over_http(emu, client):
    config = client.get("/_emulator/config").json()
    assert config["latency"] == 0.3 and config["fail_marker"] == "[fail]"
    response = client.post("/_emulator/config", json={"latency": 0.1, "api_keys": ["a", "b"]})
    assert response.status_code == 200
    # The accepted keys are set; the answer names them by key_id, never the keys themselves.
    assert response.json()["api_key_ids"] == sorted([key_id("a"), key_id("b")])
    assert "api_keys" not in response.json()
    assert emu.config.latency == 0.1 and emu.config.api_keys == frozenset({"a", "b"})
    assert client.post("/_emulator/config", json={"latency": -1}).status_code == 400
    assert client.post("/_emulator/config", json={"bogus": 1}).status_code == 400
    with pytest.raises(ValueError):
        emu.configure(bogus=1)


def test_stats_reset_and_jobs_over_http(emu, client):
    client.post("/v1/text_to_image", headers=RUNWAY_HEADERS,
                json={"model": "gen4_image", "promptText": "x", "ratio": "720:720"})
    assert client.get("/_emulator/stats").json()["runway"]["total_submissions"] == 1
    assert client.get("/_emulator/stats").json() == emu.stats()
    jobs = client.get("/_emulator/jobs").json()
    assert len(jobs["runway"]) == 1 and jobs["runway"][0]["model"] == "gen4_image"
    assert client.post("/_emulator/reset").json() == {"ok": True}
    assert emu.stats()["runway"]["total_submissions"] == 0
    assert client.get("/_emulator/jobs").json()["runway"] == []


def test_media_cache_reuses_identical_media(emu, client):
    emu.configure(media_cache=True)
    body = {"promptText": "same", "referenceImages": [{"uri": "https://a.example/b", "tag": "abc"}],
            "seed": 5}
    outputs = []
    for _ in range(2):
        request_id = client.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS,
                                 json=body).json()["request_id"]
        final, _ = wait_until(
            lambda rid=request_id: client.get(f"/v2/requests/{rid}", headers=SEGMIND_HEADERS),
            lambda r: r.status_code == 200,
        )
        outputs.append(client.get(final.json()["output"]).content)
    assert outputs[0] == outputs[1]
    assert emu.stats()["media_cache"] == {"hits": 1, "misses": 1}


def test_image_from_a_moto_s3_presigned_url(emu, client):
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.create_bucket(Bucket="frames")
        source = picture(1000, 1000)
        s3.put_object(Bucket="frames", Key="in.png", Body=png_bytes(source))
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "frames", "Key": "in.png"},
                                        ExpiresIn=600)
        task_id = client.post("/v1/image_to_video", headers=RUNWAY_HEADERS, json={
            "model": "gen4_turbo", "promptImage": url, "ratio": "960:960", "duration": 5,
        }).json()["id"]
        final, _ = wait_until(
            lambda: client.get(f"/v1/tasks/{task_id}", headers=RUNWAY_HEADERS),
            lambda r: r.json()["status"] in ("SUCCEEDED", "FAILED"),
        )
    finally:
        server.stop()
    assert final.json()["status"] == "SUCCEEDED", final.json()
    info = probe_video(client.get(final.json()["output"][0]).content)
    assert mean_abs_difference(info.first_frame, fit(source, 960, 960)) < 5


def test_cli_serves_until_interrupted():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect_runway.emulator", "--port", "0", "--latency", "0.2",
         "--fail-marker", "BOOM", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = process.stdout.readline()
        url = line.split(" on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 10
        while True:
            try:
                config = httpx.get(f"{url}/_emulator/config", trust_env=False).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert config["latency"] == 0.2 and config["fail_marker"] == "BOOM"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_restart_after_stop():
    emulator = Emulator(EmulatorConfig(latency=0.1, video_fps=2))
    for _ in range(2):
        with emulator:
            response = httpx.post(f"{emulator.url}/v1/text_to_image", headers=RUNWAY_HEADERS,
                                  json={"model": "gen4_image", "promptText": "x",
                                        "ratio": "720:720"}, trust_env=False)
            task_id = response.json()["id"]
            final, _ = wait_until(
                lambda tid=task_id: httpx.get(f"{emulator.url}/v1/tasks/{tid}",
                                              headers=RUNWAY_HEADERS, trust_env=False),
                lambda r: r.json()["status"] == "SUCCEEDED",
            )
        assert final.json()["output"]


def test_only_loopback_binds():
    from prefect_runway.emulator.server import run_forever

    with pytest.raises(ValueError):
        run_forever(EmulatorConfig(), 0, host="0.0.0.0")


# ---- only this machine may drive it ---------------------------------------------------------

CONTROL = [("POST", "/_emulator/config", {"latency": 9}), ("POST", "/_emulator/faults",
           {"random": {"500": 1.0}}), ("POST", "/_emulator/reset", None),
           ("DELETE", "/_emulator/faults", None)]


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8765", "10.0.0.5",
                                  "127.0.0.1.attacker.example"])
def test_a_request_addressed_to_another_host_is_refused(emu, client, host):
    """DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1
    sends its requests with ``Host: attacker.example``."""
    for method, path, body in [*CONTROL, ("GET", "/_emulator/stats", None),
                               ("GET", "/_emulator/config", None)]:
        response = client.request(method, path, json=body, headers={"host": host})
        assert response.status_code == 403, (method, path)
    response = client.post("/v1/text_to_image", headers={**RUNWAY_HEADERS, "host": host},
                           json={"model": "gen4_image", "promptText": "x", "ratio": "720:720"})
    assert response.status_code == 403
    assert emu.config.latency == 0.3 and emu.stats()["runway"]["total_submissions"] == 0
    assert client.get("/_emulator/faults").json()["plan"]["random"] == {}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8765", "[::1]:9"])
def test_loopback_host_headers_are_answered(client, host):
    assert client.get("/_emulator/health", headers={"host": host}).json() == {"ok": True}


def test_control_bodies_must_be_json(emu, client):
    """A page may POST text/plain (or a form) anywhere without asking first: refused."""
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        response = client.post("/_emulator/config", content=b'{"latency": 9}', headers=headers)
        assert response.status_code == 415, content_type
        response = client.post("/_emulator/faults", content=b'{"random": {"500": 1.0}}',
                               headers=headers)
        assert response.status_code == 415, content_type
    assert emu.config.latency == 0.3
    assert client.post("/_emulator/config", json={"latency": 0.2}).status_code == 200
    assert emu.config.latency == 0.2


def test_control_routes_refuse_a_browsers_cross_site_request(emu, client):
    for origin in ("https://attacker.example", "null", "http://127.0.0.1.attacker.example"):
        for method, path, body in CONTROL:
            response = client.request(method, path, json=body, headers={"origin": origin})
            assert response.status_code == 403, (origin, path)
    assert emu.config.latency == 0.3
    local = client.post("/_emulator/reset", headers={"origin": f"http://127.0.0.1:{emu.port}"})
    assert local.json() == {"ok": True}


def test_no_answer_holds_key_material(emu, client):
    key = "sk-emulator-secret-0123456789"
    emu.configure(api_keys=frozenset({key}))
    client.post("/v1/text_to_image", headers={**RUNWAY_HEADERS, "Authorization": f"Bearer {key}"},
                json={"model": "gen4_image", "promptText": "x", "ratio": "720:720"})
    answers = [client.get(f"/_emulator/{name}").text
               for name in ("jobs", "stats", "charges", "config", "faults")]
    for text in answers:
        for part in (key, key[-4:], key[:8]):
            assert part not in text
    assert client.get("/_emulator/jobs").json()["runway"][0]["key_id"] == key_id(key)
