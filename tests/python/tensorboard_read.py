"""Reads every run under a log dir with TensorBoard's own EventAccumulator and prints one JSON
object: {run: {"scalars": {tag: [[step, value], ...]}, "hparams": {tag: HParamsPluginData as a
dict}}}, runs named by their folder relative to the log dir ("." for the log dir itself), as
TensorBoard names them."""

import json
import os
import sys

from google.protobuf import json_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def main():
    logdir = sys.argv[1]
    runs = {}
    for folder, _, files in sorted(os.walk(logdir)):
        if not any("tfevents" in f for f in files):
            continue
        acc = EventAccumulator(folder, size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        scalars = {
            tag: [[e.step, e.value] for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]
        }
        hparams = {}
        try:
            contents = acc.PluginTagToContent("hparams")
        except KeyError:  # no summary of the plugin in this run
            contents = {}
        for tag, content in contents.items():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            hparams[tag] = json_format.MessageToDict(data)
        runs[os.path.relpath(folder, logdir)] = {"scalars": scalars, "hparams": hparams}
    json.dump(runs, sys.stdout)


if __name__ == "__main__":
    main()
