package headcount

// Makes "go mod vendor" copy the static library's directory.
import _ "github.com/headcount-rs/headcount/bindings/go/build/linux-amd64"
