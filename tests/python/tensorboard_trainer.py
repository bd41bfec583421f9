"""A trainer that reports its metric only through TensorBoard evaluation events (no
cloudml-hypertune), written by TensorBoard's own EventFileWriter: `objective` in
<job-dir>/eval at steps 10 and 20, the last being -(x - 0.3)^2."""

import argparse
import os
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--job-dir", required=True)
    parser.add_argument("--x", type=float, required=True)
    args, _ = parser.parse_known_args()
    writer = EventFileWriter(os.path.join(args.job_dir, "eval"))
    for step in (10, 20):
        value = -((args.x - 0.3) ** 2) * step / 20
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="objective", simple_value=value)]
        )
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()


if __name__ == "__main__":
    main()
