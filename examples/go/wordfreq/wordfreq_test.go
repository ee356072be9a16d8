package main

import (
	"reflect"
	"strings"
	"testing"

	hanzo "github.com/hanzoai/hanzo-node/hanzo-sdk/go"
)

func TestWords(t *testing.T) {
	got := words("Don't stop -- well-known 'quoted' café, 42 times!")
	want := []string{"Don't", "stop", "well-known", "quoted", "café", "42", "times"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("words = %q, want %q", got, want)
	}
}

func TestCountWords(t *testing.T) {
	out, err := countWords(Input{Text: "The cat and the hat. The end!", Top: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := Output{TotalWords: 7, UniqueWords: 5, Top: []WordCount{{"the", 3}, {"and", 1}}}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got %+v, want %+v", out, want)
	}
}

func TestOptions(t *testing.T) {
	out, err := countWords(Input{
		Text:          "The the THE a an apple Apple",
		CaseSensitive: true,
		MinLength:     3,
		Stopwords:     []string{"apple"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Output{TotalWords: 4, UniqueWords: 4, Top: []WordCount{{"Apple", 1}, {"THE", 1}, {"The", 1}, {"the", 1}}}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got %+v, want %+v", out, want)
	}
	if _, err := countWords(Input{Text: "x", Top: -1}); err == nil {
		t.Fatal("negative top accepted")
	}
}

func TestEnvelope(t *testing.T) {
	got := string(hanzo.Envelope(wordFreq, []byte(`{"text":"b a b","top":1}`)))
	want := `{"ok":{"total_words":3,"unique_words":2,"top":[{"word":"b","count":2}]}}`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	got = string(hanzo.Envelope(wordFreq, []byte(`{"top":1}`)))
	if !strings.Contains(got, `missing required field \"text\"`) {
		t.Fatalf("got %s", got)
	}
}
