// The project demo: filled in as the packages land (see each package's README).
console.log("Quiesce demo: nothing to show yet.")
