"""A trained model at work on collections: a gallery to search (`gallery`, `identify`), a training cache to
clean (`clean`), photos of unknown people to group (`cluster`). `faces` embeds any input the same way."""
