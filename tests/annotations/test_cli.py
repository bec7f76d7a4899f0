"""``prodet convert`` and the ``prodet`` dispatcher as users call them."""

from __future__ import annotations

import json
import subprocess
import sys

from prodet.annotations.pickle_store import load_dataset
from prodet.commands import main as prodet
from tests.annotations.voc_factory import make_voc


def make(tmp_path):
    return make_voc(
        tmp_path / "voc",
        {"a": (64, 48, [("can", 11, 21, 50, 40)]), "c": (40, 30, [("can", 30, 20, 10, 25)])},
    )


def test_convert_writes_dataset_report_and_coco(tmp_path, capsys):
    voc = make(tmp_path)
    out, report, coco = tmp_path / "d.pkl", tmp_path / "r.json", tmp_path / "c.json"
    code = prodet(
        ["convert", str(voc), "-o", str(out), "--report", str(report), "--coco", str(coco)]
    )
    assert code == 0
    assert len(load_dataset(out).records) == 2
    problems = json.loads(report.read_text())["problems"]
    assert [(p["kind"], p["file"], p["object_index"], p["severity"]) for p in problems] == [
        ("inverted_box", "c.xml", 0, "error")
    ]
    assert len(json.loads(coco.read_text())["annotations"]) == 2
    printed = capsys.readouterr()
    assert "objects:          2" in printed.out and "c.xml object 0: inverted box" in printed.err
    assert prodet(["convert", str(voc), "-o", str(out)]) == 0
    assert "reused" in capsys.readouterr().out


def test_fail_mode_exits_non_zero_and_keeps_old_output(tmp_path, capsys):
    voc = make(tmp_path)
    out = tmp_path / "d.pkl"
    out.write_bytes(b"previous")
    assert prodet(["convert", str(voc), "-o", str(out), "--on-error", "fail"]) == 1
    assert out.read_bytes() == b"previous"
    assert "nothing written" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert prodet(["convert", str(tmp_path / "nope"), "-o", str(tmp_path / "d.pkl")]) == 2
    assert "no such folder" in capsys.readouterr().err
    classes = tmp_path / "classes.txt"
    classes.write_text("can\ncan\n")
    assert prodet(["convert", str(make(tmp_path)), "-o", "x.pkl", "--classes", str(classes)]) == 2
    assert "duplicate class names ['can']" in capsys.readouterr().err
    assert prodet(["nosuch"]) == 2
    assert "prodet: unknown command 'nosuch'" in capsys.readouterr().err


def test_console_script_runs_without_torch(tmp_path):
    voc = make(tmp_path)
    code = (
        "import sys; from prodet.commands import main; "
        f"rc = main(['convert', {str(voc)!r}, '-o', {str(tmp_path / 'd.pkl')!r}, '--quiet']); "
        "assert 'torch' not in sys.modules, 'convert imported torch'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [r.image_id for r in load_dataset(tmp_path / "d.pkl").records] == ["a", "c"]
