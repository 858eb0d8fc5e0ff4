"""Job files for `emo predict jobs=…`: CSV and JSONL rows, defaults, paths, and errors that name the line."""

from __future__ import annotations

import pytest

from emo_lightning.pipeline.job_files import JobFileError, read_jobs


def test_csv_rows_take_defaults_for_empty_cells_and_paths_relative_to_the_file(tmp_path):
    jobs_file = tmp_path / "batch" / "jobs.csv"
    jobs_file.parent.mkdir()
    jobs_file.write_text("image,audio,output,seed,speed,sampler\n"
                         "a.jpg,a.wav,out/a.mp4,3,,dpmsolver++\n"
                         "/abs/b.png,b.m4a,b.mp4,,1.2,\n")
    first, second = read_jobs(jobs_file, defaults={"seed": 0, "steps": 40})
    assert first["image"] == str(tmp_path / "batch" / "a.jpg") and second["image"] == "/abs/b.png"
    assert (first["seed"], first["speed"], first["sampler"], first["steps"]) == (3, None, "dpmsolver++", 40)
    assert (second["seed"], second["speed"], second["sampler"]) == (0, 1.2, None)


def test_jsonl_rows(tmp_path):
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text('{"image": "a.jpg", "audio": "a.wav", "output": "a.mp4", "guidance_audio": 2}\n\n'
                         '{"image": "b.jpg", "audio": "b.wav", "output": "b.mp4", "face_detector": "none"}\n')
    jobs = read_jobs(jobs_file)
    assert [j["guidance_audio"] for j in jobs] == [2.0, None]
    assert [j["face_detector"] for j in jobs] == [None, "none"]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("jobs.csv", "image,audio,output,sped\na,b,c,1\n", r"jobs.csv:2: unknown column\(s\) \['sped'\]"),
    ("jobs.csv", "image,audio,output\na,b,\n", "jobs.csv:2: the job has no 'output'"),
    ("jobs.csv", "image,audio,output,steps\na,b,c,many\n", "jobs.csv:2: steps must be int, got 'many'"),
    ("jobs.csv", "image,audio,output\na,b,c\nd,e,c\n", "several jobs write the same output"),
    ("jobs.jsonl", '{"image": "a"}\n[1]\n', "jobs.jsonl:2: expected a JSON object"),
    ("jobs.csv", "image,audio,output\n", "lists no jobs"),
    ("jobs.txt", "a,b,c\n", "must be .csv or .jsonl"),
])
def test_a_bad_job_file_fails_before_anything_runs(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(JobFileError, match=message):
        read_jobs(tmp_path / name)
