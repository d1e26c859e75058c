//! Neural reconstruction: positional encodings, encoders, coordinate decoders, losses and trainers.
