"""Built-in encoders: image (timm, cnn) and text (sentence_transformer, rnn, use_multilingual, bow)."""
