"""GET /_emulator/media/{id}: content headers, Range requests (resumable downloads)."""

from __future__ import annotations

import pytest
from emu_helpers import SEGMIND_HEADERS, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def media_url(client):
    response = client.post("/v2/runway-gen4-image", headers=SEGMIND_HEADERS, json={
        "promptText": "ranges", "referenceImages": [{"uri": "https://a.example/b", "tag": "abc"}]})
    request_id = response.json()["request_id"]
    final, _ = wait_until(
        lambda: client.get(f"/v2/requests/{request_id}", headers=SEGMIND_HEADERS),
        lambda r: r.status_code == 200,
    )
    return final.json()["output"]


def test_full_download_headers(client, media_url):
    response = client.get(media_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["accept-ranges"] == "bytes"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["etag"].startswith('"')
    head = client.head(media_url)
    assert head.status_code == 200
    assert head.headers["content-length"] == response.headers["content-length"]
    assert head.content == b""


def test_range_requests_reassemble_the_file(emu, client, media_url):
    whole = client.get(media_url).content
    total = len(whole)
    first = client.get(media_url, headers={"Range": "bytes=0-999"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-999/{total}"
    assert first.headers["content-length"] == "1000"
    rest = client.get(media_url, headers={"Range": "bytes=1000-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes 1000-{total - 1}/{total}"
    assert first.content + rest.content == whole
    suffix = client.get(media_url, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == whole[-10:]
    beyond_end = client.get(media_url, headers={"Range": f"bytes=10-{total + 100}"})
    assert beyond_end.content == whole[10:]
    stats = emu.stats()["segmind"]
    assert stats["downloads"] == 5
    assert stats["download_bytes"] == total + 1000 + (total - 1000) + 10 + (total - 10)


def test_unsatisfiable_range_is_416(client, media_url):
    total = len(client.get(media_url).content)
    response = client.get(media_url, headers={"Range": f"bytes={total}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{total}"


def test_if_range_with_a_stale_etag_gives_the_whole_file(client, media_url):
    whole = client.get(media_url)
    etag = whole.headers["etag"]
    fresh = client.get(media_url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206
    stale = client.get(media_url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == whole.content


def test_malformed_or_multi_ranges_are_ignored(client, media_url):
    whole = client.get(media_url).content
    for header in ("bytes=5-2", "items=0-1", "bytes=0-1,4-5"):
        response = client.get(media_url, headers={"Range": header})
        assert response.status_code == 200 and response.content == whole


def test_unknown_media_is_404(client):
    assert client.get("/_emulator/media/doesnotexist").status_code == 404
