package restcommtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func infobipStatusOf(v map[string]any) (float64, string) {
	msgs, _ := v["messages"].([]any)
	if len(msgs) != 1 {
		return 0, ""
	}
	st, _ := msgs[0].(map[string]any)["status"].(map[string]any)
	g, _ := st["groupId"].(float64)
	name, _ := st["name"].(string)
	return g, name
}

func TestInfobipFakeChecksAuthAndBodyAndAnswersItsShapes(t *testing.T) {
	s := NewInfobip()
	defer s.Close()
	url := s.BaseURL() + "/sms/3/messages"
	good := `{"messages":[{"sender":"ExampleCo","destinations":[{"to":"12015550123"}],"content":{"text":"123456 is your code"}}]}`
	for _, auth := range []string{"", "App wrong", "Bearer " + s.APIKey, "Basic " + s.APIKey} {
		if st, _, v := sendTo(t, url, "application/json", good, "Authorization", auth); st != 401 || v["errorCode"] == nil {
			t.Errorf("authorization %q: %d %v", auth, st, v)
		}
	}
	auth := []string{"Authorization", "App " + s.APIKey}
	for body, want := range map[string]string{
		`{"messages":[{"sender":"x","destinations":[{"to":"12015550123"}],"content":{"text":"t"},"text":"v2 field"}]}`: "body",
		`{"messages":[{"sender":"x","destinations":[],"content":{"text":"t"}}]}`:                                       "destinations",
		`{"messages":[{"sender":"x","destinations":[{"to":"12015550123"}],"content":{"text":" "}}]}`:                   "content.text",
		`{"messages":[{"sender":"x","destinations":[{"to":"555"}],"content":{"text":"t"}}]}`:                           "to",
	} {
		st, _, v := sendTo(t, url, "application/json", body, auth...)
		viol, _ := v["violations"].([]any)
		if st != 400 || len(viol) != 1 || !strings.Contains(viol[0].(map[string]any)["property"].(string), want) {
			t.Errorf("%s: %d %v, want a violation of %s", body, st, v, want)
		}
	}
	if st, _, _ := sendTo(t, url, "text/plain", good, auth...); st != 415 {
		t.Errorf("a text body: %d", st)
	}
	st, _, v := sendTo(t, url, "application/json", good, auth...)
	if g, name := infobipStatusOf(v); st != 200 || g != 1 || name != "PENDING_ACCEPTED" || v["bulkId"] == nil {
		t.Fatalf("a good send: %d %v", st, v)
	}
	for f, want := range map[InfobipFailure]string{InfobipRejectedDestination: "REJECTED_DESTINATION", InfobipRejectedDND: "REJECTED_DND",
		InfobipNotEnoughCredits: "REJECTED_NOT_ENOUGH_CREDITS", InfobipRejectedSender: "REJECTED_SENDER"} {
		s.Fail(f)
		if st, _, v := sendTo(t, url, "application/json", good, auth...); st != 200 {
			t.Errorf("%s: %d", want, st)
		} else if g, name := infobipStatusOf(v); g != 5 || name != want {
			t.Errorf("%s: group %v %s", want, g, name)
		}
	}
	for f, want := range map[InfobipFailure]int{InfobipTooManyRequests: 429, InfobipInternalError: 500} {
		s.Fail(f)
		if st, _, v := sendTo(t, url, "application/json", good, auth...); st != want || v["errorCode"] == nil {
			t.Errorf("failure %d: %d %v", f, st, v)
		}
	}
	if len(s.Messages()) != 1 {
		t.Errorf("refused messages were recorded: %+v", s.Messages())
	}
}

func TestInfobipFakePostsReportsAsPlannedAndPendingOnlyWhenAsked(t *testing.T) {
	s := NewInfobip()
	defer s.Close()
	got := make(chan string, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep struct {
			Results []struct {
				Status struct{ Name string } `json:"status"`
			} `json:"results"`
		}
		_ = json.NewDecoder(r.Body).Decode(&rep)
		if len(rep.Results) == 1 && r.Header.Get("Content-Type") == "application/json" {
			got <- rep.Results[0].Status.Name
		}
	}))
	defer hook.Close()
	s.AutoReceipts(ReceiptStep{Status: "PENDING_ENROUTE"}, ReceiptStep{Status: "DELIVERED_TO_HANDSET", After: time.Millisecond},
		ReceiptStep{Status: "UNDELIVERABLE_NOT_DELIVERED", ErrorCode: 1, After: time.Millisecond})
	body := func(intermediate bool) string {
		b, _ := json.Marshal(map[string]any{"messages": []any{map[string]any{"sender": "x", "destinations": []any{map[string]any{"to": "12015550123"}},
			"content": map[string]any{"text": "t"}, "webhooks": map[string]any{"delivery": map[string]any{"url": hook.URL, "intermediateReport": intermediate}, "contentType": "application/json"}}}})
		return string(b)
	}
	for _, tc := range []struct {
		intermediate bool
		want         []string
	}{
		{false, []string{"DELIVERED_TO_HANDSET", "UNDELIVERABLE_NOT_DELIVERED"}},
		{true, []string{"PENDING_ENROUTE", "DELIVERED_TO_HANDSET", "UNDELIVERABLE_NOT_DELIVERED"}},
	} {
		if st, _, v := sendTo(t, s.BaseURL()+"/sms/3/messages", "application/json", body(tc.intermediate), "Authorization", "App "+s.APIKey); st != 200 {
			t.Fatalf("send: %d %v", st, v)
		}
		for _, want := range tc.want {
			select {
			case name := <-got:
				if name != want {
					t.Errorf("intermediate %v: report %s, want %s", tc.intermediate, name, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no %s report within 5s", want)
			}
		}
	}
}
